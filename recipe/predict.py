"""`python run_cola.py predict --model_dir OUT "sentence" ...`: label trained-model predictions.

Sentences come from the arguments, from `--file` (one per line) or from standard input. Each gets its
label and the probability of "acceptable", as a table, as JSON lines (`--format jsonl`) or in the
columns of a run's `<split>_predictions.tsv` (`--format tsv`, label empty). Tokenization is the
training's own (`recipe.data.tokenize_sentences`, with the run's max_seq_length read from
run_args.json), and batches are padded by the same collator as in training.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from recipe.arguments import DataArguments
from recipe.cls_only import apply_last_layer_cls_only
from recipe.data import tokenize_sentences
from recipe.model import CheckpointError
from recipe.predictions import PREDICTION_COLUMNS, tsv_text
from recipe.reporting import RUN_ARGS_FILE

logger = logging.getLogger(__name__)

ACCEPTABLE = "acceptable"


@dataclass
class Prediction:
    """One sentence's predicted label and probability of being acceptable."""

    sentence: str
    label: str
    prob_acceptable: float


def load_trained_model(model_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a fine-tuned CoLA model and its tokenizer from a folder written by a training run.

    Raises:
        CheckpointError: the folder is missing, has no model config, or does not load as a classifier.
    """
    if not model_dir.is_dir():
        raise CheckpointError(
            f"--model_dir {model_dir}: no such folder. Pass the --output_dir of a finished training run."
        )
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"--model_dir {model_dir} is not a trained model: it has no config.json. Pass the --output_dir "
            "of a finished training run (or one of its checkpoint-N folders)."
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"--model_dir {model_dir} does not load as a sequence classifier with its tokenizer: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Pass the --output_dir of "
            "a finished training run."
        ) from err
    if model.config.num_labels != 2:
        raise CheckpointError(
            f"--model_dir {model_dir} has {model.config.num_labels} labels; a CoLA model has 2 "
            "(unacceptable, acceptable)."
        )
    apply_last_layer_cls_only(model)  # same probabilities, less work (recipe/cls_only.py)
    return model.eval(), tokenizer


def training_data_args(model_dir: Path) -> DataArguments | None:
    """The data arguments of the run that wrote `model_dir` (or its parent, for a checkpoint-N folder)."""
    for folder in (model_dir, model_dir.parent):
        path = folder / RUN_ARGS_FILE
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8")).get("data_args", {})
            known = {key: value for key, value in saved.items() if key in DataArguments.__dataclass_fields__}
            return DataArguments(**known)
    return None


def tokenization_settings(
    model_dir: Path, tokenizer: PreTrainedTokenizerBase, max_seq_length: int | None
) -> tuple[int, bool]:
    """max_seq_length and pad_to_max_length as in training: the flag, else the run's, else the tokenizer's."""
    saved = training_data_args(model_dir)
    if max_seq_length is not None:
        return max_seq_length, bool(saved and saved.pad_to_max_length)
    if saved is not None:
        return saved.max_seq_length, saved.pad_to_max_length
    limit = tokenizer.model_max_length
    fallback = limit if isinstance(limit, int) and 0 < limit <= 100_000 else DataArguments().max_seq_length
    logger.warning(
        "%s has no %s (not written by a training run of this recipe): truncating at %d tokens.",
        model_dir,
        RUN_ARGS_FILE,
        fallback,
    )
    return fallback, False


def acceptable_index(model: PreTrainedModel) -> int:
    """The logit index of "acceptable" (from the model's label names; 1 as in CoLA otherwise)."""
    for index, name in model.config.id2label.items():
        if str(name).lower() == ACCEPTABLE:
            return int(index)
    return 1


def predict_sentences(
    sentences: Sequence[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    pad_to_max_length: bool = False,
    batch_size: int = 64,
) -> list[Prediction]:
    """Predict every sentence, `batch_size` at a time, tokenized exactly as in training."""
    device = next(model.parameters()).device
    collator = DataCollatorWithPadding(tokenizer)
    index = acceptable_index(model)
    predictions: list[Prediction] = []
    for start in range(0, len(sentences), batch_size):
        chunk = list(sentences[start : start + batch_size])
        encoded = tokenize_sentences({"sentence": chunk}, tokenizer, max_seq_length, pad_to_max_length)
        features = [{key: encoded[key][i] for key in encoded} for i in range(len(chunk))]
        batch = {key: value.to(device) for key, value in collator(features).items()}
        with torch.no_grad():
            probabilities = torch.softmax(model(**batch).logits.float(), dim=-1).cpu()
        for sentence, row in zip(chunk, probabilities, strict=True):
            label_id = int(row.argmax())
            predictions.append(Prediction(sentence, str(model.config.id2label[label_id]), float(row[index])))
    return predictions


def read_lines(handle: TextIO, source: str) -> list[str]:
    """Non-empty lines of a text; blank lines are skipped and counted in the log (not silently)."""
    lines = [line.rstrip("\r\n") for line in handle]
    blank = [number for number, line in enumerate(lines, start=1) if not line.strip()]
    if blank:
        logger.warning("%s: skipped %d blank line(s): %s", source, len(blank), blank[:10])
    return [line for line in lines if line.strip()]


def gather_sentences(sentences: Sequence[str], file: str | None, stdin: TextIO) -> list[str]:
    """Sentences from the arguments, else from `file` ('-' is stdin), else from stdin when piped.

    Raises:
        ValueError: no sentence was given, both sources were given, or the file is missing.
    """
    if sentences and file:
        raise ValueError("give sentences as arguments or with --file, not both.")
    if sentences:
        return list(sentences)
    if file and file != "-":
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"--file {file}: no such file. Pass a text file with one sentence per line.")
        with path.open(encoding="utf-8") as handle:
            found = read_lines(handle, str(path))
    elif file == "-" or not stdin.isatty():
        found = read_lines(stdin, "standard input")
    else:
        found = []
    if not found:
        raise ValueError(
            'no sentences: pass them as arguments ("The cat sat."), with --file sentences.txt, '
            "or on standard input (one per line)."
        )
    return found


def format_table(predictions: Iterable[Prediction]) -> str:
    """A fixed-width table: label, probability of acceptable, sentence."""
    lines = [f"{'label':<12}  {'p(acceptable)':>13}  sentence"]
    lines += [f"{p.label:<12}  {p.prob_acceptable:>13.4f}  {p.sentence}" for p in predictions]
    return "\n".join(lines)


def format_jsonl(predictions: Iterable[Prediction]) -> str:
    """One JSON object per line: sentence, label, prob_acceptable."""
    return "\n".join(
        json.dumps({"sentence": p.sentence, "label": p.label, "prob_acceptable": round(p.prob_acceptable, 6)})
        for p in predictions
    )


def format_tsv(predictions: Iterable[Prediction]) -> str:
    """The columns of a run's `<split>_predictions.tsv` (recipe/predictions.py), label and source empty."""
    # p > 0.5 is the argmax of two softmax probabilities (a tie goes to index 0, unacceptable, in both).
    rows = (
        ("", "", int(p.prob_acceptable > 0.5), f"{p.prob_acceptable:.6f}", p.sentence) for p in predictions
    )
    return tsv_text(PREDICTION_COLUMNS, rows).rstrip("\n")


def build_predict_parser() -> argparse.ArgumentParser:
    """Flags of `run_cola.py predict`."""
    parser = argparse.ArgumentParser(
        prog="run_cola.py predict",
        description="Label sentences as acceptable/unacceptable with a model trained by run_cola.py.",
    )
    parser.add_argument("sentences", nargs="*", help="Sentences to label (else --file or standard input).")
    parser.add_argument("--model_dir", required=True, help="The --output_dir of a training run.")
    parser.add_argument("--file", default=None, help="A text file with one sentence per line ('-': stdin).")
    parser.add_argument(
        "--format",
        choices=("table", "jsonl", "tsv"),
        default="table",
        help="Output format; tsv: the columns of a run's <split>_predictions.tsv (label empty).",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="Sentences per forward pass.")
    parser.add_argument(
        "--max_seq_length", type=int, default=None, help="Override the training run's truncation length."
    )
    parser.add_argument("--use_cpu", action="store_true", help="Stay on the CPU even when a GPU is present.")
    return parser


def predict_cli(argv: list[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Entry point of `python run_cola.py predict`; returns the exit status.

    Raises:
        CheckpointError: --model_dir is not a trained model (cli() prints it as one clean error).
    """
    parser = build_predict_parser()
    options = parser.parse_args(argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if options.batch_size < 1:
        parser.error(f"--batch_size must be at least 1; got {options.batch_size}.")
    model_dir = Path(options.model_dir)
    model, tokenizer = load_trained_model(model_dir)
    try:
        sentences = gather_sentences(options.sentences, options.file, stdin)
    except ValueError as err:
        parser.error(str(err))
    if torch.cuda.is_available() and not options.use_cpu:
        model = model.to("cuda")
    max_seq_length, pad_to_max_length = tokenization_settings(model_dir, tokenizer, options.max_seq_length)
    predictions = predict_sentences(
        sentences, model, tokenizer, max_seq_length, pad_to_max_length, options.batch_size
    )
    formatters = {"table": format_table, "jsonl": format_jsonl, "tsv": format_tsv}
    try:
        formatted = formatters[options.format](predictions)
    except ValueError as err:  # a tab inside a sentence cannot go into a TSV row
        parser.error(str(err))
    print(formatted, file=stdout)
    return 0
