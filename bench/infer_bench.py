"""Side-by-side CPU inference benchmark of a trained, exported model (`make bench-infer`).

    python run_cola.py export --model_dir OUT --int8          # first: OUT/onnx/model.onnx, model_int8.onnx
    python bench/infer_bench.py --model_dir OUT               # in-domain dev from the run's own data
    python bench/infer_bench.py --model_dir OUT --data_dir ../shared/cola_public --repeats 3

Backends, on the same sentences (CoLA's in-domain dev, in the file's order), tokenized once as the run
did (its max_seq_length) and padded to the longest sentence of each batch:
  torch fp32   the trained model (safetensors) in torch
  torch bf16   the same under bf16 autocast, only where the CPU computes bf16 natively
               (recipe/runtime/hardware.py: avx512_bf16 or amx_bf16)
  ONNX fp32    OUT/onnx/model.onnx in ONNX Runtime
  ONNX int8    OUT/onnx/model_int8.onnx (dynamic int8, recipe/serving/export.py)
Every backend gets one thread (torch.set_num_threads(1), ONNX Runtime intra_op_num_threads=1): on a
shared 2-core machine a second thread measures the neighbours as much as the model. Tokenization is
not timed (the same for every backend). Batch 32: sentences sorted by length, sentences/s over the whole
set (MCC from this pass: dynamic int8 labels depend on the batching). Batch 1: each sentence alone, sentences/s and p50/p95 latency. `--repeats N` runs every backend N
times in turn and reports medians. MCC is each backend's on the in-domain dev labels.

Results: printed, and written to the "inference" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from results_md import replace_section  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from recipe.reports.phenomena import mcc_rows  # noqa: E402
from recipe.runtime import hardware  # noqa: E402
from recipe.serving.export_check import torch_runner  # noqa: E402
from recipe.serving.onnx_backend import (  # noqa: E402
    FP32_FILE,
    INT8_FILE,
    ONNX_DIR,
    open_session,
    pad_batch,
    session_runner,
)
from recipe.serving.predict import training_data_args  # noqa: E402
from recipe.training.cola_tsv import read_cola_tsv  # noqa: E402
from recipe.training.splits import IN_DOMAIN_DEV  # noqa: E402

BATCH = 32
WARMUP_BATCHES = 3


def bf16_runner(model: Any):
    """torch under bf16 autocast (the precision training uses on a native-bf16 CPU)."""
    fp32 = torch_runner(model)

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32(batch)

    return run


def timed_pass(
    run, rows: list[dict[str, list[int]]], batch_size: int, pad_id: int
) -> tuple[list[float], np.ndarray]:
    """Seconds per batch (longest first, as predict batches) and the logits in input order."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for chosen in batches[:WARMUP_BATCHES]:
        run(pad_batch([rows[i] for i in chosen], pad_id))
    logits = np.empty((len(rows), 2), dtype=np.float32)
    seconds = []
    for chosen in batches:
        padded = pad_batch([rows[i] for i in chosen], pad_id)
        start = time.perf_counter()
        out = run(padded)
        seconds.append(time.perf_counter() - start)
        logits[np.asarray(chosen)] = out
    return seconds, logits


def measure(run, rows, pad_id: int) -> dict[str, Any]:
    batch32, logits = timed_pass(run, rows, BATCH, pad_id)
    batch1, _ = timed_pass(run, rows, 1, pad_id)
    return {
        "batch32_per_s": len(rows) / sum(batch32),
        "batch1_per_s": len(rows) / sum(batch1),
        "p50_ms": 1000 * float(np.percentile(batch1, 50)),
        "p95_ms": 1000 * float(np.percentile(batch1, 95)),
        "logits": logits,
    }


def dev_rows(
    model_dir: Path, data_dir: str | None, tokenizer
) -> tuple[list[dict[str, list[int]]], np.ndarray]:
    data_args = training_data_args(model_dir)
    folder = Path(data_dir or (data_args.data_dir if data_args else ""))
    dev = read_cola_tsv(folder / IN_DOMAIN_DEV.release_file)
    max_length = data_args.max_seq_length if data_args else 64
    encoded = tokenizer(list(dev["sentence"]), truncation=True, max_length=max_length)
    names = [name for name in tokenizer.model_input_names if name in encoded]
    rows = [{name: encoded[name][i] for name in names} for i in range(len(dev))]
    return rows, np.asarray(dev["label"])


def render(
    results: dict[str, dict[str, Any]], sizes: dict[str, float], labels: np.ndarray, command: str
) -> str:
    machine = hardware.detect_hardware(use_cpu=True)
    flags = " ".join(flag for flag in hardware.CPU_REPORTED_FLAGS if flag in machine.cpu_flags)
    base = results["torch fp32"]["batch32_per_s"]
    lines = [
        f"Command: `{command}`; {datetime.date.today().isoformat()}; {machine.describe()}; CPU flags: {flags}; "
        f"one thread per backend; {len(labels)} in-domain dev sentences; torch {torch.__version__}.",
        "",
        "| backend | file | MB | in-domain dev MCC | sentences/s, batch 32 | x torch fp32 | sentences/s, batch 1 "
        "| p50 ms, batch 1 | p95 ms, batch 1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results.items():
        mcc = float(mcc_rows(np.argmax(row["logits"], axis=-1), labels))
        lines.append(
            f"| {name} | {row['file']} | {sizes[row['file']]:.1f} | {mcc:.4f} | {row['batch32_per_s']:.0f} | "
            f"{row['batch32_per_s'] / base:.2f} | {row['batch1_per_s']:.0f} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model_dir", required=True, help="A trained run exported with `run_cola.py export --int8`."
    )
    parser.add_argument("--data_dir", default=None, help="CoLA release folder (default: the run's own).")
    parser.add_argument(
        "--repeats", type=int, default=1, help="Passes per backend, in turn; medians reported."
    )
    args = parser.parse_args(argv)
    model_dir = Path(args.model_dir)
    torch.set_num_threads(1)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows, labels = dev_rows(model_dir, args.data_dir, tokenizer)
    backends = {"torch fp32": (torch_runner(model), "model.safetensors")}
    if hardware.detect_hardware(use_cpu=True).cpu_native_bf16:
        backends["torch bf16"] = (bf16_runner(model), "model.safetensors")
    for name, file in (("ONNX fp32", FP32_FILE), ("ONNX int8", INT8_FILE)):
        backends[name] = (
            session_runner(open_session(model_dir / ONNX_DIR / file, threads=1)),
            f"{ONNX_DIR}/{file}",
        )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in backends}
    for _ in range(args.repeats):
        for name, (run, _file) in backends.items():
            runs[name].append(measure(run, rows, tokenizer.pad_token_id or 0))
    results = {}
    for name, measured in runs.items():
        results[name] = {
            key: statistics.median(m[key] for m in measured)
            for key in ("batch32_per_s", "batch1_per_s", "p50_ms", "p95_ms")
        }
        results[name] |= {"logits": measured[0]["logits"], "file": backends[name][1]}
    sizes = {file: (model_dir / file).stat().st_size / 1e6 for _, file in backends.values()}
    # Paths as path/to/<name>: the results file is committed and names no machine's folders.
    words = [w if not Path(w).is_absolute() else f"path/to/{Path(w).name}" for w in (argv or sys.argv[1:])]
    command = "python bench/infer_bench.py " + " ".join(words)
    text = render(results, sizes, labels, command)
    print(text)
    replace_section(REPO / "bench" / "RESULTS.md", "inference", "## Inference (CPU)\n\n" + text)
    print(
        json.dumps(
            {
                name: {k: round(v, 3) for k, v in r.items() if k not in ("logits", "file")}
                for name, r in results.items()
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
