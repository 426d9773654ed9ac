"""The tutorial's training loop in plain PyTorch: the outside reference for `bench/run_bench.py`.

What "BERT Fine-Tuning Tutorial with PyTorch" does, step for step: every sentence padded to 64 tokens,
a DataLoader of random batches of 32, AdamW (lr 2e-5, eps 1e-8, no weight decay), a linear schedule
with no warmup, gradients clipped to norm 1.0, seed 42; evaluation in sequential batches of 32.
It reads the same train/validation split as the recipe (recipe.training.data.load_cola_splits), so both
train on the same examples.

    python bench/tutorial_loop.py --model_dir /path/to/checkpoint --data_dir ../shared/cola_public --epochs 1
    python bench/tutorial_loop.py ... --epochs 4 --seed 43     # the tutorial's 4 epochs, another seed
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the recipe package, run from anywhere

from recipe.training.arguments import DataArguments  # noqa: E402
from recipe.training.data import load_cola_splits  # noqa: E402
from recipe.training.metrics import compute_mcc  # noqa: E402

TUTORIAL_MAX_LENGTH = 64
TUTORIAL_BATCH_SIZE = 32
TUTORIAL_LEARNING_RATE = 2e-5
TUTORIAL_EPS = 1e-8
TUTORIAL_SEED = 42


def seed_everything(seed: int) -> None:
    """The tutorial's seeding: Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def encode(sentences: list[str], labels: list[int], tokenizer: Any, max_length: int) -> TensorDataset:
    """Sentences padded/truncated to `max_length`, as the tutorial's TensorDataset."""
    encoded = tokenizer(
        sentences, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    return TensorDataset(encoded["input_ids"], encoded["attention_mask"], torch.tensor(labels))


def run_tutorial_loop(
    model_dir: str,
    data_dir: str,
    epochs: float = 1.0,
    max_train_samples: int | None = None,
    max_steps: int | None = None,
    seed: int = TUTORIAL_SEED,
) -> dict[str, Any]:
    """Train and evaluate as the tutorial does; return timings, token counts and the held-out MCCs
    (validation and in-domain dev; the model after the last epoch, as the tutorial keeps).

    Args:
        epochs: passes over the training split (whole epochs; a fraction stops early in the last one).
        max_steps: stop after this many optimizer steps (a smoke test), whatever `epochs` says.
    """
    seed_everything(seed)
    raw = load_cola_splits(
        DataArguments(
            data_dir=data_dir, max_train_samples=max_train_samples, max_seq_length=TUTORIAL_MAX_LENGTH
        ),
        seed=seed,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    train = encode(
        list(raw["train"]["sentence"]), list(raw["train"]["label"]), tokenizer, TUTORIAL_MAX_LENGTH
    )
    held_out = {
        name: encode(list(raw[name]["sentence"]), list(raw[name]["label"]), tokenizer, TUTORIAL_MAX_LENGTH)
        for name in ("validation", "in_domain_dev")
    }

    loader = DataLoader(train, sampler=RandomSampler(train), batch_size=TUTORIAL_BATCH_SIZE)
    steps_per_epoch = len(loader)
    total_steps = max(1, round(steps_per_epoch * epochs))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=TUTORIAL_LEARNING_RATE, eps=TUTORIAL_EPS, weight_decay=0.0
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total_steps)

    step, samples, real_tokens, padded_tokens = 0, 0, 0, 0
    model.train()
    start = time.perf_counter()
    while step < total_steps:
        for input_ids, attention_mask, labels in loader:
            model.zero_grad()
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            samples += len(labels)
            real_tokens += int(attention_mask.sum())
            padded_tokens += input_ids.numel()
            if step >= total_steps:
                break
    train_seconds = time.perf_counter() - start

    model.eval()
    start = time.perf_counter()
    mcc = {
        name: compute_mcc(predict(model, data), data.tensors[2].numpy()) for name, data in held_out.items()
    }
    eval_seconds = time.perf_counter() - start
    return {
        "train_seconds": train_seconds,
        "train_samples": samples,
        "train_steps": step,
        "train_real_tokens": real_tokens,
        "train_padded_tokens": padded_tokens,
        "train_split_size": len(train),
        "eval_seconds": eval_seconds,
        "eval_samples": sum(len(data) for data in held_out.values()),
        "validation_matthews_correlation": mcc["validation"],
        "in_domain_dev_matthews_correlation": mcc["in_domain_dev"],
    }


def predict(model: Any, data: TensorDataset) -> np.ndarray:
    """The tutorial's evaluation: sequential batches of 32, argmax of the logits."""
    predictions = []
    with torch.no_grad():
        for input_ids, attention_mask, _ in DataLoader(data, sampler=SequentialSampler(data), batch_size=32):
            predictions.append(
                model(input_ids=input_ids, attention_mask=attention_mask).logits.argmax(dim=-1)
            )
    return torch.cat(predictions).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", required=True, help="A local checkpoint folder (save_pretrained).")
    parser.add_argument("--data_dir", required=True, help="A CoLA release folder (raw/*.tsv).")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument(
        "--seed", type=int, default=TUTORIAL_SEED, help="The tutorial's is 42; others for seed spread."
    )
    args = parser.parse_args(argv)
    result = run_tutorial_loop(
        args.model_dir, args.data_dir, args.epochs, args.max_train_samples, args.max_steps, args.seed
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
