"""Length-ordered evaluation (recipe/training/eval_order.py), the resumable training sampler and the bench/ scripts."""

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
from recipe.runtime.hardware import build_data_collator
from recipe.training.arguments import DataArguments, parse_args
from recipe.training.data import load_cola_splits
from recipe.training.eval_order import length_order, restore_order, sequence_lengths
from recipe.training.tokenization import tokenize_cola
from recipe.training.trainer import CoLATrainer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))


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
    ordered = eval_trainer(CoLATrainer, model, tokenizer, tmp_path / "o")

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
        "sorted": ["--order_eval_by_length", "true"],
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
    for on in (results["sorted"],):
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
    assert result["eval_samples"] == 60 + 20  # in-domain dev, and 10% of the 200 training rows
    for split in ("validation", "in_domain_dev"):
        assert -1.0 <= result[f"{split}_matthews_correlation"] <= 1.0


def test_bench_measures_and_reports_a_recipe_variant(tiny_bert, cola_dir, tmp_path):
    import run_bench

    flags = run_bench.recipe_flags(str(tiny_bert), str(cola_dir), str(tmp_path / "a"), 1.0, 100)
    raw = run_bench.run_recipe_variant([*flags, "--use_cpu"])
    assert raw["train_samples"] == 90  # 100 rows less the 10% validation split, one epoch
    assert 0 < raw["train_real_tokens"] <= raw["train_padded_tokens"] < 90 * 64
    assert raw["eval_samples"] == 10 + 60 + 50
    assert raw["settings"]["train_sampling_strategy"] == "group_by_length"
    assert raw["settings"]["precision"] == "fp32"  # the suite pins a plain fp32 CPU (conftest)
    raw["peak_memory_mib"] = run_bench.peak_rss_mib()

    args = run_bench.parse_cli(["--model_dir", str(tiny_bert), "--data_dir", str(cola_dir)])
    extra = {
        "command": "test",
        "machine": run_bench.machine_description(),
        "params": 1000,
        "matmul_params": 100,
        "gflops": {"fp32": 50.0, "bf16": 100.0},
        "precision": "fp32",
        "train_split_size": run_bench.full_train_split_size(str(cola_dir)),
    }
    report = run_bench.build_report(args, {"a": [raw], "b": [raw]}, extra)
    assert report["train_split_size"] == 180
    assert report["ratios"]["a_over_b"]["train"] == pytest.approx(1.0)
    assert report["cap"]["precision"] == {"a": "fp32", "b": "fp32"}  # each variant's own precision
    assert report["cap"]["share"]["a"] == pytest.approx(
        raw["train_samples"] / raw["train_seconds"] / (50e9 / (6 * 100 * report["avg_real_tokens"]))
    )
    assert report["cap"]["samples_per_s"]["bf16"] == pytest.approx(2 * report["cap"]["samples_per_s"]["fp32"])
    markdown = run_bench.render_markdown(report)
    assert "| (a) recipe, machine defaults |" in markdown and "| (a) / (b) | 1.00x |" in markdown
    assert "Variant (a) trains in **fp32**" in markdown and "of fp32" in markdown
    assert str(tiny_bert.parent) not in json.dumps(report)  # no absolute path of this machine in the record
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


def test_training_sampler_lengths_match_the_stock_sampler(tiny_bert, cola_dir, tmp_path):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from recipe.training.sampling import EpochSeededLengthGroupedSampler

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
