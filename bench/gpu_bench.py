"""Time one epoch of CoLA-shaped bert-base training on a GPU with the recipe's fast settings (bench/gpu.sh).

No Hub and no CoLA on the GPU machine: the model is `BertForSequenceClassification(BertConfig())`
(bert-base: 12 layers, hidden 768, 110 M parameters) with random weights, and the data are random token
ids with CoLA's sentence lengths (the histogram below, from in_domain_train.tsv under the bert-base-uncased
vocabulary). Speed does not depend on which tokens or weights, only on shapes.

Paths:
  trainer  the recipe's Trainer set-up: `machine_defaults(detect_hardware())` (bf16, TF32, fused
           AdamW, length-grouped batches, dataloader workers), the recipe's collator (pad to a multiple of
           8) and the recipe's Trainer (`CoLATrainer`: length-sorted evaluation)
  loop     the same settings in a bare PyTorch loop (what the Trainer costs on top)

The first epoch warms up (CUDA context, kernel autotuning, torch.compile); the next are timed.
FLOPs: 6 x (parameters outside the embeddings) x tokens; the H200's dense bf16 peak is ~989 TFLOP/s.

    python bench/gpu_bench.py --path trainer --epochs 2 [--compile]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# Token lengths ([CLS] ... [SEP]) of CoLA in_domain_train (8551 sentences) and in_domain_dev (527).
COLA_TRAIN_LENGTHS = {
    4: 7, 5: 129, 6: 310, 7: 649, 8: 979, 9: 1154, 10: 1129, 11: 916, 12: 797, 13: 574, 14: 453, 15: 334,
    16: 235, 17: 182, 18: 145, 19: 124, 20: 96, 21: 66, 22: 67, 23: 66, 24: 41, 25: 26, 26: 21, 27: 17,
    28: 6, 29: 8, 30: 6, 31: 1, 32: 8, 33: 1, 35: 1, 37: 1, 40: 1, 47: 1,
}  # fmt: skip
COLA_DEV_LENGTHS = {
    5: 12, 6: 20, 7: 39, 8: 63, 9: 81, 10: 64, 11: 53, 12: 45, 13: 30, 14: 32, 15: 21, 16: 17, 17: 16,
    18: 4, 19: 9, 20: 3, 21: 4, 22: 5, 23: 3, 24: 2, 25: 1, 27: 1, 29: 1, 31: 1,
}  # fmt: skip
TRAIN_EPOCH_SIZE = 7695  # in_domain_train less the 10% validation split
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # dense bf16
BATCH_SIZE = 32
VOCAB_SIZE = 30522


def cola_shaped_lengths(histogram: dict[int, int], count: int, seed: int) -> np.ndarray:
    """`count` sentence lengths drawn (without replacement, shuffled) from the CoLA histogram."""
    lengths = np.repeat(list(histogram), list(histogram.values()))
    return np.random.default_rng(seed).permutation(lengths)[:count]


def synthetic_dataset(lengths: np.ndarray, seed: int):
    """A `datasets.Dataset` of random token ids with the given lengths and random labels."""
    import datasets

    rng = np.random.default_rng(seed)
    input_ids = [[101, *rng.integers(1000, VOCAB_SIZE, n - 2).tolist(), 102] for n in lengths]
    return datasets.Dataset.from_dict(
        {
            "input_ids": input_ids,
            "attention_mask": [[1] * n for n in lengths],
            "label": rng.integers(0, 2, len(lengths)).tolist(),
        }
    )


def pad_tokenizer():
    """A tokenizer object for the collator's padding ([PAD] = id 0, as in bert-base-uncased)."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab={"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4})


SMOKE_CONFIG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SMOKE_SAMPLES = 96


def build_model(smoke: bool = False):
    """bert-base from its config (random weights); `smoke`: a 2-layer hidden-32 one, for a CPU check."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_labels=2, **(SMOKE_CONFIG if smoke else {})))


def synchronize(device_type: str) -> None:
    """Wait for queued GPU work, so wall-clock times cover it (nothing to wait for on a CPU)."""
    if device_type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mib(device_type: str) -> float:
    if device_type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in f".{name}")


class EpochTimer(TrainerCallback):
    """A TrainerCallback that records each epoch's wall time (after a CUDA synchronize)."""

    def __init__(self, device_type: str) -> None:
        super().__init__()
        self.device_type = device_type
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        synchronize(self.device_type)
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        synchronize(self.device_type)
        self.seconds.append(time.perf_counter() - self._start)


def run_trainer_path(args: argparse.Namespace, train, dev, hardware) -> dict[str, Any]:
    """One warm-up epoch plus `args.epochs` timed ones through the recipe's Trainer set-up on `hardware`."""
    from transformers import TrainingArguments

    from recipe.runtime.hardware import build_data_collator, machine_defaults
    from recipe.training.trainer import CoLATrainer

    fast = machine_defaults(hardware)
    if args.compile:
        fast["torch_compile"] = True
    timer = EpochTimer(hardware.device_type)
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=BATCH_SIZE,
            learning_rate=2e-5,
            adam_epsilon=1e-8,
            lr_scheduler_type="linear",
            num_train_epochs=1 + args.epochs,
            max_grad_norm=1.0,
            seed=42,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            **fast,
        )
        model = build_model(args.smoke)
        trainer = CoLATrainer(
            model=model,
            args=training_args,
            train_dataset=train,
            processing_class=pad_tokenizer(),
            data_collator=build_data_collator(pad_tokenizer(), "cuda"),
            callbacks=[timer],
        )
        trainer.train()
        metrics = trainer.evaluate(eval_dataset=dev)  # warm-up
        metrics = trainer.evaluate(eval_dataset=dev)
    return {
        "settings": {k: str(v) for k, v in fast.items()},
        "epoch_seconds": timer.seconds,
        "eval_sentences_per_s": len(dev) / metrics["eval_runtime"],
        "params": sum(p.numel() for p in model.parameters()),
        "matmul_params": matmul_params(model),
        "peak_memory_mib": peak_memory_mib(hardware.device_type),
    }


def run_loop_path(args: argparse.Namespace, train, dev, hardware) -> dict[str, Any]:
    """The same settings in a bare loop: bf16 autocast, TF32, fused AdamW, length-grouped, pad to 8
    (on a GPU; the smoke test's CPU runs the loop in fp32)."""
    from transformers import get_linear_schedule_with_warmup
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from recipe.runtime.hardware import build_data_collator

    on_gpu = hardware.device_type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = on_gpu
    torch.backends.cudnn.allow_tf32 = on_gpu
    device = torch.device("cuda" if on_gpu else "cpu")
    model = build_model(args.smoke).to(device)
    step_model = torch.compile(model) if args.compile else model
    collator = build_data_collator(pad_tokenizer(), "cuda")
    rows = [train[i] for i in range(len(train))]
    lengths = [len(r["input_ids"]) for r in rows]
    steps_per_epoch = -(-len(rows) // BATCH_SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, weight_decay=0.0, fused=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, steps_per_epoch * (1 + args.epochs))
    generator = torch.Generator().manual_seed(42)
    seconds = []
    for _ in range(1 + args.epochs):
        order = get_length_grouped_indices(lengths, BATCH_SIZE, generator=generator)
        synchronize(device.type)
        start = time.perf_counter()
        model.train()
        for i in range(0, len(order), BATCH_SIZE):
            batch = collator([rows[j] for j in order[i : i + BATCH_SIZE]])
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast:
                loss = step_model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        synchronize(device.type)
        seconds.append(time.perf_counter() - start)
    return {
        "settings": {
            "bf16": "autocast" if on_gpu else "off",
            "tf32": str(on_gpu),
            "optim": "fused AdamW",
            "compile": str(args.compile),
        },
        "epoch_seconds": seconds,
        "params": sum(p.numel() for p in model.parameters()),
        "matmul_params": matmul_params(model),
        "peak_memory_mib": peak_memory_mib(device.type),
    }


def render_markdown(results: list[dict[str, Any]], command: str) -> str:
    """The GPU section of bench/RESULTS.md from one or more runs."""
    lines = [
        "## GPU",
        "",
        f"Command: `{command}`  ",
        f"Device: {results[0]['device']}; torch {results[0]['torch']}; date {results[0]['date']}  ",
        "Model: bert-base (BertConfig(), random weights), CoLA-shaped batches of 32 (7695 per epoch), "
        "first epoch is warm-up. TFLOP/s = 6 x matmul parameters x real tokens / time.",
        "",
        "| path | compile | s/epoch | samples/s | eval sentences/s | TFLOP/s | share of peak | peak memory (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        share = f"{100 * r['share_of_peak']:.1f}%" if r.get("share_of_peak") else "n/a"
        evals = f"{r['eval_sentences_per_s']:.0f}" if "eval_sentences_per_s" in r else "-"
        lines.append(
            f"| {r['path']} | {r['compile']} | {r['seconds_per_epoch']:.2f} | {r['train_samples_per_s']:.0f} "
            f"| {evals} | {r['achieved_tflops']:.1f} | {share} | {r['peak_memory_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--report",
        nargs="+",
        default=None,
        help="Write bench/RESULTS.md's GPU section from these JSON files.",
    )
    parser.add_argument("--command", default="bash bench/gpu.sh", help="The command shown in the report.")
    parser.add_argument("--path", choices=["trainer", "loop"], default="trainer")
    parser.add_argument("--epochs", type=int, default=2, help="Timed epochs after the warm-up one.")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model.")
    parser.add_argument("--json", default=None, help="Also write the result here.")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="A tiny model on 96 examples; runs on a CPU too (a check, no timing).",
    )
    args = parser.parse_args(argv)
    if args.report:
        from results_md import replace_section

        results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.report]
        replace_section(REPO / "bench" / "RESULTS.md", "gpu", render_markdown(results, args.command))
        print(render_markdown(results, args.command))
        return 0
    from recipe.runtime.hardware import detect_hardware

    # The recipe's hardware layer decides the device, as for training (the tests pin it).
    hardware = detect_hardware()
    if hardware.device_type != "cuda" and not args.smoke:
        print(f"gpu_bench.py: skipped: no CUDA device ({hardware.describe()}).", file=sys.stderr)
        return 0

    epoch_size = SMOKE_SAMPLES if args.smoke else TRAIN_EPOCH_SIZE
    train_lengths = cola_shaped_lengths(COLA_TRAIN_LENGTHS, epoch_size, seed=0)
    train = synthetic_dataset(train_lengths, seed=1)
    dev = synthetic_dataset(cola_shaped_lengths(COLA_DEV_LENGTHS, 527, seed=2), seed=3)
    result = (run_trainer_path if args.path == "trainer" else run_loop_path)(args, train, dev, hardware)

    name = hardware.cuda_name if hardware.device_type == "cuda" else "cpu (smoke test)"
    peak = next((tflops for key, tflops in PEAK_TFLOPS.items() if key in name), None)
    timed = result["epoch_seconds"][1:] or result["epoch_seconds"]
    seconds_per_epoch = float(np.mean(timed))
    real_tokens = int(train_lengths.sum())
    achieved = 6 * result["matmul_params"] * real_tokens / seconds_per_epoch / 1e12
    result.update(
        {
            "device": name,
            "machine": hardware.describe(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "path": args.path,
            "compile": args.compile,
            "seconds_per_epoch": seconds_per_epoch,
            "train_samples_per_s": epoch_size / seconds_per_epoch,
            "real_tokens_per_epoch": real_tokens,
            "achieved_tflops": achieved,
            "peak_tflops": peak,
            "share_of_peak": achieved / peak if peak else None,
        }
    )
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
