"""Fast defaults (recipe/hardware.py), length-ordered evaluation (recipe/eval_order.py) and the bench/ scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fast_args
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

import run_cola
from recipe import hardware
from recipe.arguments import ConfigError, DataArguments, parse_args
from recipe.data import load_cola_splits, tokenize_cola
from recipe.eval_order import (
    LengthOrderedTrainer,
    length_order,
    restore_order,
    sequence_lengths,
    token_budget_batches,
)
from recipe.hardware import (
    Hardware,
    build_data_collator,
    fast_data_defaults,
    fast_training_defaults,
    read_cpu_flags,
    without_explicit,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU has the given /proc/cpuinfo flags."""

    def set_flags(flags: frozenset[str]) -> None:
        monkeypatch.setattr(hardware, "read_cpu_flags", lambda: flags)

    return set_flags


def test_read_cpu_flags_from_a_cpuinfo_file(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert read_cpu_flags(tmp_path / "absent") == frozenset()


def test_cpu_without_native_bf16_gets_fp32_grouping_and_dynamic_padding(
    cpu_flags, tiny_bert, cola_dir, tmp_path
):
    cpu_flags(AVX2_ONLY)
    _, data_args, training_args, _ = parse_args(fast_args(tiny_bert, cola_dir, tmp_path))
    assert training_args.bf16 is False and training_args.fp16 is False
    assert training_args.train_sampling_strategy == "group_by_length"
    assert training_args.optim == "adamw_torch_fused"
    assert training_args.dataloader_num_workers == 0
    assert training_args.per_device_eval_batch_size == hardware.CPU_EVAL_BATCH_SIZE == 32
    assert data_args.pad_to_max_length is False and data_args.order_eval_by_length is True
    assert data_args.eval_max_tokens == hardware.CPU_EVAL_MAX_TOKENS == 1024
    # A config or a flag still sets the evaluation batch size, and then batches count sentences.
    flags = fast_args(tiny_bert, cola_dir, tmp_path, "--per_device_eval_batch_size", "7")
    _, data_args, training_args, _ = parse_args(flags)
    assert training_args.per_device_eval_batch_size == 7 and data_args.eval_max_tokens == 0


def test_token_budget_yields_to_static_shapes_unless_asked_for(cpu_flags, tiny_bert, cola_dir, tmp_path):
    cpu_flags(AVX2_ONLY)
    static = fast_args(tiny_bert, cola_dir, tmp_path, "--pad_to_max_length", "true")
    assert parse_args(static)[1].eval_max_tokens == 0
    config = tmp_path / "c.yaml"
    config.write_text("pad_to_max_length: true\n")
    assert (
        parse_args(["--config", str(config), *fast_args(tiny_bert, cola_dir, tmp_path)])[1].eval_max_tokens
        == 0
    )
    both = fast_args(
        tiny_bert, cola_dir, tmp_path, "--per_device_eval_batch_size", "7", "--eval_max_tokens", "300"
    )
    assert parse_args(both)[1].eval_max_tokens == 300
    with pytest.raises(ConfigError, match="--eval_max_tokens must be 0"):
        parse_args(fast_args(tiny_bert, cola_dir, tmp_path, "--eval_max_tokens", "-1"))


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_cpu_with_native_bf16_gets_bf16(cpu_flags, tiny_bert, cola_dir, tmp_path, flag):
    cpu_flags(AVX2_ONLY | {flag})
    _, _, training_args, _ = parse_args(fast_args(tiny_bert, cola_dir, tmp_path))
    assert training_args.bf16 is True


def test_explicit_flags_and_config_win_over_fast_defaults(cpu_flags, tiny_bert, cola_dir, tmp_path):
    cpu_flags(AVX2_ONLY | {"amx_bf16"})
    flags = fast_args(tiny_bert, cola_dir, tmp_path, "--bf16", "false", "--train_sampling_strategy", "random")
    _, _, training_args, _ = parse_args(flags)
    assert training_args.bf16 is False
    assert training_args.train_sampling_strategy == "random"

    config = tmp_path / "c.yaml"
    config.write_text("bf16: false\ntrain_sampling_strategy: sequential\noptim: adamw_torch\n")
    _, _, training_args, _ = parse_args(["--config", str(config), *fast_args(tiny_bert, cola_dir, tmp_path)])
    assert training_args.bf16 is False
    assert training_args.train_sampling_strategy == "sequential"
    assert training_args.optim == "adamw_torch"


def test_choosing_one_precision_drops_the_default_other(monkeypatch, tiny_bert, cola_dir, tmp_path):
    card = Hardware(device_type="cuda", cpu_count=2, cuda_capability=(9, 0), cuda_bf16=True)
    monkeypatch.setattr("recipe.arguments.detect_hardware", lambda use_cpu: card)
    monkeypatch.setattr("transformers.training_args.is_torch_tf32_available", lambda: True)
    monkeypatch.setattr("transformers.training_args.enable_tf32", lambda value: None)
    # A bf16 card's defaults (bf16, tf32), then the user asks for fp16.
    _, _, training_args, _ = parse_args(fast_args(tiny_bert, cola_dir, tmp_path, "--fp16"))
    assert training_args.fp16 is True and training_args.bf16 is False
    assert without_explicit({"bf16": True, "tf32": True}, {"fp16"}) == {"tf32": True}


def test_gpu_settings_follow_the_card():
    ampere = Hardware(device_type="cuda", cpu_count=16, cuda_capability=(9, 0), cuda_bf16=True)
    defaults = fast_training_defaults(ampere)
    assert defaults["bf16"] is True and "fp16" not in defaults and defaults["tf32"] is True
    assert defaults["dataloader_num_workers"] == 4 and defaults["dataloader_pin_memory"] is True
    assert defaults["per_device_eval_batch_size"] == 128
    volta = Hardware(device_type="cuda", cpu_count=4, cuda_capability=(7, 0), cuda_bf16=False)
    defaults = fast_training_defaults(volta)
    assert defaults["fp16"] is True and "bf16" not in defaults and "tf32" not in defaults
    assert defaults["dataloader_num_workers"] == 2
    assert fast_data_defaults(ampere) == {}  # batches of 128 sentences; no token budget measured on a GPU


def tokenized_splits(tiny_bert: Path, cola_dir: Path, **data_kwargs):
    data_args = DataArguments(data_dir=str(cola_dir), **data_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    return tokenizer, tokenize_cola(load_cola_splits(data_args, seed=42), tokenizer, data_args)


def test_padding_dynamic_by_default_static_with_pad_to_max_length(tiny_bert, cola_dir):
    tokenizer, tokenized = tokenized_splits(tiny_bert, cola_dir)
    rows = [tokenized["train"][i] for i in range(8)]
    longest = max(len(row["input_ids"]) for row in rows)
    assert build_data_collator(tokenizer, "cpu")(rows)["input_ids"].shape == (8, longest)
    assert build_data_collator(tokenizer, "cuda")(rows)["input_ids"].shape == (8, -(-longest // 8) * 8)

    tokenizer, padded = tokenized_splits(tiny_bert, cola_dir, pad_to_max_length=True, max_seq_length=64)
    assert {len(ids) for ids in padded["train"]["input_ids"]} == {64}
    rows = [padded["train"][i] for i in range(8)]
    assert build_data_collator(tokenizer, "cpu")(rows)["input_ids"].shape == (8, 64)


def test_restore_order_inverts_the_permutation():
    order = [2, 0, 3, 1]
    sorted_values = np.array([[20], [0], [30], [10]])
    assert restore_order(sorted_values, order).ravel().tolist() == [0, 10, 20, 30]
    pair = restore_order((sorted_values, sorted_values[:, 0]), order)
    assert pair[1].tolist() == [0, 10, 20, 30]


def test_sequence_lengths_follow_the_rows_of_a_selected_dataset():
    import datasets

    rows = {"input_ids": [[1] * n for n in (3, 7, 1, 5, 2)]}
    dataset = datasets.Dataset.from_dict(rows).select([4, 0, 3])  # an indices mapping over the table
    assert sequence_lengths(dataset) == [2, 3, 5]
    assert sequence_lengths(dataset.with_format("torch")) == [2, 3, 5]
    as_list = [{"input_ids": ids} for ids in rows["input_ids"]]  # any map-style dataset
    assert sequence_lengths(as_list) == [3, 7, 1, 5, 2]


def eval_trainer(trainer_class, model, tokenizer, out: Path):
    args = TrainingArguments(
        output_dir=str(out), use_cpu=True, per_device_eval_batch_size=16, report_to="none"
    )
    return trainer_class(
        model=model,
        args=args,
        processing_class=tokenizer,
        data_collator=build_data_collator(tokenizer, "cpu"),
    )


def test_length_ordered_batches_and_predictions_in_dataset_order(tiny_bert, cola_dir, tmp_path):
    tokenizer, tokenized = tokenized_splits(tiny_bert, cola_dir)
    dev = tokenized["in_domain_dev"]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    ordered = eval_trainer(LengthOrderedTrainer, model, tokenizer, tmp_path / "o")

    # The evaluation batches come longest first, each padded to its own longest sentence.
    widths = [batch["input_ids"].shape[1] for batch in ordered.get_eval_dataloader(dev)]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    lengths = [len(ids) for ids in dev["input_ids"]]
    assert length_order(dev) != list(range(len(dev))) and lengths[length_order(dev)[0]] == max(lengths)

    # predict(): row i of the output is example i, as with the stock sequential Trainer.
    plain = eval_trainer(Trainer, model, tokenizer, tmp_path / "p").predict(dev)
    mine = ordered.predict(dev)
    np.testing.assert_allclose(mine.predictions, plain.predictions, rtol=1e-5, atol=1e-6)
    assert mine.label_ids.tolist() == plain.label_ids.tolist() == list(dev["label"])


def test_token_budget_batches_cover_every_row_once_within_the_budget():
    lengths = [5, 40, 3, 12, 12, 7, 70, 2, 9]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for budget, multiple in ((64, None), (36, None), (64, 8), (1, None), (10_000, None)):
        batches = token_budget_batches(order, lengths, budget, multiple)
        assert [row for batch in batches for row in batch] == order  # each row once, order kept

        def cost(rows, m=multiple or 1):
            return len(rows) * max(-(-lengths[r] // m) * m for r in rows)

        for k, batch in enumerate(batches):
            assert cost(batch) <= budget or len(batch) == 1  # a row wider than the budget goes alone
            if k + 1 < len(batches):  # and a batch is cut only when the next row would not fit
                assert cost(batch + batches[k + 1][:1]) > budget
    assert token_budget_batches(order, lengths, 64) == [[6], [1], [3, 4, 8, 5, 0], [2, 7]]
    assert token_budget_batches(order, lengths, 64, 8) == [[6], [1], [3, 4, 8, 5], [0, 2, 7]]
    with pytest.raises(ValueError, match="at least 1"):
        token_budget_batches(order, lengths, 0)


def test_evaluation_batches_by_tokens_give_the_same_predictions(tiny_bert, cola_dir, tmp_path):
    tokenizer, tokenized = tokenized_splits(tiny_bert, cola_dir)
    dev = tokenized["in_domain_dev"]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, per_device_eval_batch_size=16, report_to="none"
    )
    budget = 4 * max(len(ids) for ids in dev["input_ids"])
    by_tokens = LengthOrderedTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        data_collator=build_data_collator(tokenizer, "cpu"),
        eval_max_tokens=budget,
    )
    shapes = [tuple(batch["input_ids"].shape) for batch in by_tokens.get_eval_dataloader(dev)]
    assert sum(rows for rows, _ in shapes) == len(dev)
    assert all(rows * width <= budget for rows, width in shapes)
    assert shapes[0] == (4, budget // 4)  # the longest sentences, four a batch
    assert max(rows for rows, _ in shapes) > 4  # shorter ones, more a batch
    assert [tuple(b["input_ids"].shape) for b in by_tokens.get_test_dataloader(dev)] == shapes

    plain = eval_trainer(Trainer, model, tokenizer, tmp_path / "p").predict(dev)
    mine = by_tokens.predict(dev)
    np.testing.assert_allclose(mine.predictions, plain.predictions, rtol=1e-5, atol=1e-6)
    assert mine.label_ids.tolist() == plain.label_ids.tolist() == list(dev["label"])
    # The loss is the mean over sentences, however many each batch holds.
    exact = torch.nn.functional.cross_entropy(torch.tensor(mine.predictions), torch.tensor(dev["label"]))
    assert mine.metrics["test_loss"] == pytest.approx(exact.item(), rel=1e-5)
    fixed = eval_trainer(LengthOrderedTrainer, model, tokenizer, tmp_path / "f").predict(dev)  # 16 + ... + 12
    assert fixed.metrics["test_loss"] == pytest.approx(exact.item(), rel=1e-5)


def write_split_decision_model(tiny_bert: Path, cola_dir: Path, out: Path) -> Path:
    """The tiny BERT with a classifier that splits the dev sentences about half and half (no training),
    with no sentence near the decision boundary, so float rounding cannot flip a prediction."""
    tokenizer, tokenized = tokenized_splits(tiny_bert, cola_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    dev = tokenized["in_domain_dev"]
    with torch.no_grad():
        model.classifier.weight.mul_(50)  # spread the margins
        batch = build_data_collator(tokenizer, "cpu")([dev[i] for i in range(len(dev))])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        margins = np.sort((logits[:, 1] - logits[:, 0]).numpy())
        middle = len(margins) // 2
        model.classifier.bias[1] -= float(margins[middle - 1] + margins[middle]) / 2
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_ordered_evaluation_gives_the_same_metrics(tiny_bert, cola_dir, tmp_path):
    model = write_split_decision_model(tiny_bert, cola_dir, tmp_path / "model")
    variants = {
        "sorted": ["--order_eval_by_length", "true", "--eval_max_tokens", "0"],
        "sorted, by tokens": ["--order_eval_by_length", "true", "--eval_max_tokens", "200"],
        "stock": ["--order_eval_by_length", "false"],
    }
    results = {
        name: run_cola.main(
            *parse_args(fast_args(model, cola_dir, tmp_path / str(k), "--do_train", "false") + flags)
        )
        for k, (name, flags) in enumerate(variants.items())
    }
    off = results["stock"]
    assert off["in_domain_dev_matthews_correlation"] != 0.0  # a model that tells the classes apart
    for on in (results["sorted"], results["sorted, by tokens"]):
        for split in ("eval", "in_domain_dev", "out_of_domain_dev"):
            assert on[f"{split}_matthews_correlation"] == off[f"{split}_matthews_correlation"]
            assert on[f"{split}_accuracy"] == off[f"{split}_accuracy"]
            assert on[f"{split}_loss"] == pytest.approx(off[f"{split}_loss"], rel=1e-5)


def test_tutorial_loop_runs_a_few_steps(tiny_bert, cola_dir):
    from tutorial_loop import run_tutorial_loop

    result = run_tutorial_loop(str(tiny_bert), str(cola_dir), max_steps=3)
    assert result["train_steps"] == 3 and result["train_samples"] == 3 * 32
    assert result["train_padded_tokens"] == 3 * 32 * 64  # the tutorial pads every sentence to 64
    assert 0 < result["train_real_tokens"] < result["train_padded_tokens"]
    assert result["eval_samples"] == 60


def test_bench_measures_and_reports_a_recipe_variant(tiny_bert, cola_dir, tmp_path):
    import run_bench

    flags = run_bench.recipe_flags(str(tiny_bert), str(cola_dir), str(tmp_path / "a"), 1.0, 100)
    raw = run_bench.run_recipe_variant([*flags, "--use_cpu"])
    assert raw["train_samples"] == 90  # 100 rows less the 10% validation split, one epoch
    assert 0 < raw["train_real_tokens"] <= raw["train_padded_tokens"] < 90 * 64
    assert raw["eval_samples"] == 10 + 60 + 50
    assert raw["settings"]["train_sampling_strategy"] == "group_by_length"
    raw["peak_memory_mib"] = run_bench.peak_rss_mib()

    args = run_bench.parse_cli(["--model_dir", str(tiny_bert), "--data_dir", str(cola_dir)])
    extra = {
        "command": "test",
        "machine": run_bench.machine_description(),
        "params": 1000,
        "matmul_params": 100,
        "gflops": 50.0,
        "train_split_size": run_bench.full_train_split_size(str(cola_dir)),
    }
    report = run_bench.build_report(args, {"a": [raw], "b": [raw]}, extra)
    assert report["train_split_size"] == 180
    assert report["ratios"]["a_over_b"]["train"] == pytest.approx(1.0)
    assert report["cap"]["a_share"] == pytest.approx(
        raw["train_samples"] / raw["train_seconds"] / (50e9 / (6 * 100 * report["avg_real_tokens"]))
    )
    markdown = run_bench.render_markdown(report)
    assert "| (a) recipe, fast defaults |" in markdown and "| (a) / (b) | 1.00x |" in markdown
    json.dumps(report)  # the JSON written next to RESULTS.md

    # Repeated runs: medians of the rates, and the median of side-by-side ratios (each run's listed).
    def at(speed: float) -> dict:
        return {
            **raw,
            "train_seconds": raw["train_seconds"] / speed,
            "eval_seconds": raw["eval_seconds"] / speed,
        }

    report = run_bench.build_report(
        args, {"a": [at(6), at(7), at(5)], "c": [at(1), at(1.25), at(0.5)]}, extra
    )
    rate = raw["train_samples"] / raw["train_seconds"]
    assert report["variants"]["a"]["summary"]["train_samples_per_s"] == pytest.approx(6 * rate)
    assert report["ratios"]["a_over_c"]["train_runs"] == pytest.approx([6, 5.6, 10])
    assert report["ratios"]["a_over_c"]["train"] == pytest.approx(
        6.0
    )  # not 6 / 1 by chance: median of 6, 5.6, 10
    markdown = run_bench.render_markdown(report)
    assert (
        "| (a) / (c) | 6.00x (6.00, 5.60, 10.00) |" in markdown and "median over a variant's runs" in markdown
    )


def test_bench_skips_with_a_clear_message_without_data(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_bench.py"), "--data_dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "skipped" in result.stderr and "--data_dir" in result.stderr
    assert not (tmp_path / "RESULTS.md").exists()


@pytest.mark.parametrize("path", ["trainer", "loop"])
def test_gpu_bench_smoke_runs_on_cpu(path, tmp_path):
    import gpu_bench

    out = tmp_path / "gpu.json"
    assert gpu_bench.main(["--smoke", "--epochs", "1", "--path", path, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["epoch_seconds"]) == 2 and result["seconds_per_epoch"] > 0
    assert result["real_tokens_per_epoch"] > gpu_bench.SMOKE_SAMPLES * 4
    assert torch.cuda.is_available() or result["device"] == "cpu (smoke test)"


# Allocates and frees a 64 MiB tensor (above glibc's 32 MiB mmap ceiling) and counts the page faults of
# each allocation, before and after keep_freed_memory_in_process; prints "before after applied".
FAULTS_PROBE = """
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
from recipe.hardware import keep_freed_memory_in_process

def faults_per_allocation(n=5):
    for _ in range(3):  # the heap settles into reusing the freed block
        torch.zeros(16 * 1024 * 1024)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.zeros(16 * 1024 * 1024)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / n

before = faults_per_allocation()
applied = keep_freed_memory_in_process("cpu")
print(before, faults_per_allocation(), applied)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_instead_of_page_faulted_again():
    # In a child process: the setting lasts for the life of a process.
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_PROBE, str(REPO)], capture_output=True, text=True, check=True
    )
    before, after, applied = result.stdout.split()
    assert applied == "True"
    assert float(before) > 10_000  # 64 MiB in 4 KiB pages: every allocation faulted in afresh
    assert float(after) < 100


def test_freed_memory_setting_is_for_cpus_only():
    assert hardware.keep_freed_memory_in_process("cuda") is False
    assert hardware.keep_freed_memory_in_process("mps") is False


def test_training_sampler_lengths_match_the_stock_sampler(tiny_bert, cola_dir, tmp_path):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from recipe.sampling import EpochSeededLengthGroupedSampler
    from recipe.trainer import CoLATrainer

    tokenizer, tokenized = tokenized_splits(tiny_bert, cola_dir)
    train = tokenized["train"]
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=8, report_to="none",
        train_sampling_strategy="group_by_length", seed=3,
    )  # fmt: skip
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    trainer = CoLATrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    sampler = trainer._get_train_sampler()
    stock = LengthGroupedSampler(8, dataset=train)  # decodes every row to measure it
    assert isinstance(sampler, EpochSeededLengthGroupedSampler)
    assert sampler.lengths == stock.lengths and sampler.batch_size == 8
    assert list(sampler) == list(EpochSeededLengthGroupedSampler(8, stock.lengths, seed=3))


def test_eval_batches_bench_times_each_setting(tiny_bert, cola_dir, tmp_path, capsys):
    import eval_batches

    argv = ["--model_dir", str(tiny_bert), "--data_dir", str(cola_dir), "--rounds", "2", "--max_rows", "20"]
    assert eval_batches.main([*argv, "--settings", "16", "tokens:200"]) == 0
    table = capsys.readouterr().out.split("| evaluation batches |")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows] == ["| 16 sentences", "| cut at 200 tokens"]
    assert all(len(row.split(" | ")[2].split(", ")) == 2 for row in rows)  # one rate per round
    assert rows[0].endswith("| 1.00x |")
    with pytest.raises(SystemExit):
        eval_batches.parse_cli(["--settings", "tokens:0"])
