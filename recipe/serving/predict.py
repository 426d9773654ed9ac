"""`python run_cola.py predict --model_dir OUT "sentence" ...`: label sentences with a trained model.

Built on the stock `pipeline("text-classification", model=OUT)` that the model card shows, so the
Python snippet and the CLI share one path. Sentences come from the arguments, from `--file` (one per
line) or from standard input. Each gets its label (acceptable / unacceptable) and the probability of
"acceptable", as a table, as JSON lines (`--format jsonl`) or in the columns of a run's
`<split>_predictions.tsv` (`--format tsv`, label empty). Truncation is the training's own
(max_seq_length from the run's run_args.json); sentences go through the pipeline in batches sorted by
length (less padding) and come back in input order.

`--backend onnx|int8` runs the model `run_cola.py export` wrote into `OUT/onnx/` with ONNX Runtime
(recipe/serving/onnx_backend.py: numpy, onnxruntime and tokenizers; no torch in the computation), batched
and truncated the same way, with the same outputs in the same order. The default backend is torch in fp32:
bf16 on a native-bf16 CPU would need its labels checked against fp32 first, as export checks int8.
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

import numpy as np
from scipy.special import softmax
from transformers import Pipeline, pipeline

from recipe.reports.predictions import PREDICTION_COLUMNS, tsv_text
from recipe.reports.run_args import RUN_ARGS_FILE
from recipe.runtime import hardware
from recipe.serving.onnx_backend import DEFAULT_BATCH_SIZE
from recipe.training.arguments import DataArguments
from recipe.training.model import CheckpointError

logger = logging.getLogger(__name__)

ACCEPTABLE = "acceptable"
UNACCEPTABLE = "unacceptable"
COLA_ACCEPTABLE_INDEX = 1  # CoLA's (and GLUE's) labels: 0 = unacceptable, 1 = acceptable


@dataclass
class Prediction:
    """One sentence's predicted label and probability of being acceptable."""

    sentence: str
    label: str  # ACCEPTABLE or UNACCEPTABLE, whatever the model's own label names
    prob_acceptable: float


def check_model_folder(model_dir: Path, what: str = "a finished training run") -> None:
    """Refuse a --model_dir that is no folder or has no model config, naming it and what to pass (`what`).

    Raises:
        CheckpointError: no such folder, or no config.json in it.
    """
    if not model_dir.is_dir():
        raise CheckpointError(f"--model_dir {model_dir}: no such folder. Pass the --output_dir of {what}.")
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"--model_dir {model_dir} is not a trained model: it has no config.json. Pass the --output_dir "
            f"of {what}."
        )


def load_cola_pipeline(model_dir: Path, device: str = "cpu") -> Pipeline:
    """The stock text-classification pipeline on a fine-tuned CoLA folder (model and tokenizer).

    Raises:
        CheckpointError: the folder is missing, has no model config, does not load as a two-label
            classifier with its tokenizer.
    """
    check_model_folder(model_dir, "a finished training run (or one of its checkpoint-N folders)")
    try:
        # Safetensors only, as training loads checkpoints (pickle weights can run code when loaded).
        classifier = pipeline(
            "text-classification", model=str(model_dir), device=device, model_kwargs={"use_safetensors": True}
        )
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"--model_dir {model_dir} does not load as a sequence classifier with its tokenizer: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Pass the --output_dir of "
            "a finished training run."
        ) from err
    if classifier.model.config.num_labels != 2:
        raise CheckpointError(
            f"--model_dir {model_dir} has {classifier.model.config.num_labels} labels; a CoLA model has 2 "
            "(unacceptable, acceptable)."
        )
    return classifier


def acceptable_label(id2label: dict[int, str], requested: str | None, model_dir: Path) -> str:
    """The model's label name that means "acceptable".

    `requested` (--acceptable_label, a name or an index) wins; else the label named "acceptable" (the
    recipe's own models); else index 1, CoLA's convention, with a warning that says how to change it.

    Raises:
        CheckpointError: `requested` is neither a label name nor an index of the model.
    """
    names = [str(id2label[index]) for index in sorted(id2label)]
    if requested is not None:
        if requested in names:
            return requested
        if requested.isdigit() and int(requested) in id2label:
            return str(id2label[int(requested)])
        raise CheckpointError(
            f"--acceptable_label {requested}: {model_dir} has the labels {', '.join(names)} "
            f"(indices {', '.join(str(i) for i in sorted(id2label))}); pass one of those names or indices."
        )
    for name in names:
        if name.lower() == ACCEPTABLE:
            return name
    chosen = str(id2label[COLA_ACCEPTABLE_INDEX])
    other = next(name for name in names if name != chosen)
    logger.warning(
        "%s names its labels %s, none of them 'acceptable' (not saved by this recipe?): treating %s "
        "(index %d, CoLA's convention 1 = acceptable) as acceptable. If %s means acceptable, pass "
        "--acceptable_label %s.",
        model_dir,
        ", ".join(names),
        chosen,
        COLA_ACCEPTABLE_INDEX,
        other,
        other,
    )
    return chosen


def training_data_args(model_dir: Path) -> DataArguments | None:
    """The data arguments of the run that wrote `model_dir` (or its parent, for a checkpoint-N folder)."""
    for folder in (model_dir, model_dir.parent):
        path = folder / RUN_ARGS_FILE
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8")).get("data_args", {})
            known = {key: value for key, value in saved.items() if key in DataArguments.__dataclass_fields__}
            return DataArguments(**known)
    return None


def training_max_seq_length(model_dir: Path, classifier: Pipeline, max_seq_length: int | None) -> int:
    """The truncation length: the flag, else the training run's, else the tokenizer's own limit."""
    return truncation_length(model_dir, classifier.tokenizer.model_max_length, max_seq_length)


def truncation_length(model_dir: Path, tokenizer_limit: object, max_seq_length: int | None) -> int:
    """`training_max_seq_length` from the tokenizer's `model_max_length` (any backend)."""
    if max_seq_length is not None:
        return max_seq_length
    saved = training_data_args(model_dir)
    if saved is not None:
        return saved.max_seq_length
    limit = tokenizer_limit
    fallback = limit if isinstance(limit, int) and 0 < limit <= 100_000 else DataArguments().max_seq_length
    logger.warning(
        "%s has no %s (not written by a training run of this recipe): truncating at %d tokens.",
        model_dir,
        RUN_ARGS_FILE,
        fallback,
    )
    return fallback


def predict_sentences(
    sentences: Sequence[str],
    classifier: Pipeline,
    max_seq_length: int,
    acceptable: str,
    batch_size: int = 64,
) -> list[Prediction]:
    """Label every sentence through `classifier`, truncated as in training; results in input order.

    The pipeline batches in the order it is given, so the sentences go in sorted by token count (each
    batch pads to its longest, fewer pad tokens) and the results are put back in input order.
    """
    lengths = [len(ids) for ids in classifier.tokenizer(list(sentences))["input_ids"]]
    order = sorted(range(len(sentences)), key=lambda i: lengths[i])
    outputs = classifier(
        [sentences[i] for i in order],
        batch_size=batch_size,
        truncation=True,
        max_length=max_seq_length,
        top_k=None,  # every label's score, not only the top one
        function_to_apply="softmax",
    )
    predictions: list[Prediction | None] = [None] * len(sentences)
    for position, scores in zip(order, outputs, strict=True):
        by_label = {score["label"]: score["score"] for score in scores}
        prob_acceptable = float(by_label[acceptable])
        best = max(scores, key=lambda score: score["score"])["label"]
        label = ACCEPTABLE if best == acceptable else UNACCEPTABLE
        predictions[position] = Prediction(sentences[position], label, prob_acceptable)
    return [prediction for prediction in predictions if prediction is not None]


def onnx_folder(model_dir: Path) -> Path:
    """Where `--backend onnx|int8` finds the exported model: OUT/onnx/, or OUT itself when it is that folder."""
    from recipe.serving.onnx_backend import FP32_FILE, ONNX_DIR

    return model_dir if (model_dir / FP32_FILE).is_file() else model_dir / ONNX_DIR


def predict_with_onnx(
    sentences: Sequence[str], model_dir: Path, backend: str, options: argparse.Namespace, threads: int
) -> list[Prediction]:
    """Label `sentences` with the exported model of `backend` ("onnx" or "int8"); results in input order.

    Raises:
        CheckpointError: the export extra is missing, or the exported folder or model file is missing or
            damaged (names the path), or --acceptable_label is not one of its labels.
    """
    from recipe.serving.onnx_backend import BACKEND_FILES, OnnxClassifier, OnnxModelError

    folder = onnx_folder(model_dir)
    run_dir = model_dir.parent if folder == model_dir else model_dir
    try:
        tokenizer_config = folder / "tokenizer_config.json"
        limit = json.loads(tokenizer_config.read_text(encoding="utf-8")).get("model_max_length")
    except (OSError, ValueError):
        limit = None
    max_seq_length = truncation_length(run_dir, limit, options.max_seq_length)
    try:
        classifier = OnnxClassifier(folder, BACKEND_FILES[backend], max_seq_length, threads)
    except OnnxModelError as err:
        raise CheckpointError(f"--backend {backend}: {err}") from err
    acceptable = acceptable_label(classifier.id2label, options.acceptable_label, model_dir)
    acceptable_index = next(i for i, name in classifier.id2label.items() if name == acceptable)
    logits = classifier.logits(sentences, options.batch_size).astype(np.float64)
    probabilities = softmax(logits, axis=-1)
    return [
        Prediction(
            sentence,
            ACCEPTABLE if int(np.argmax(row)) == acceptable_index else UNACCEPTABLE,
            float(row[acceptable_index]),
        )
        for sentence, row in zip(sentences, probabilities, strict=True)
    ]


def read_lines(data: bytes, source: str) -> list[str]:
    """Non-empty lines of UTF-8 text (a BOM is dropped); blank lines are skipped and counted in the log.

    Raises:
        ValueError: the text is not UTF-8 (names the line).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"{source}, line {line}: not UTF-8 text ({err.reason}). Save it as UTF-8.") from err
    # splitlines() would also split at Unicode separators (U+2028, form feeds) inside a sentence.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a blank one
    blank = [number for number, line in enumerate(lines, start=1) if not line.strip()]
    if blank:
        logger.warning("%s: skipped %d blank line(s): %s", source, len(blank), blank[:10])
    return [line for line in lines if line.strip()]


def gather_sentences(sentences: Sequence[str], file: str | None, stdin: TextIO) -> list[str]:
    """Sentences from the arguments, else from `file` ('-' is stdin), else from stdin when piped.

    Raises:
        ValueError: no sentence was given (names the source that held none), an argument is blank, both
            sources were given, or the file is missing or not UTF-8.
    """
    if sentences and file:
        raise ValueError("give sentences as arguments or with --file, not both.")
    if sentences:
        blank = [number for number, sentence in enumerate(sentences, start=1) if not sentence.strip()]
        if blank:
            raise ValueError(f"sentence argument {blank[0]} is empty; pass non-empty sentences.")
        return list(sentences)
    if file and file != "-":
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"--file {file}: no such file. Pass a text file with one sentence per line.")
        source = f"--file {file}"
        found = read_lines(path.read_bytes(), source)
    elif file == "-" or not stdin.isatty():
        source = "standard input"
        raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode("utf-8")
        found = read_lines(raw, source)
    else:
        raise ValueError(
            'no sentences: pass them as arguments ("The cat sat."), with --file sentences.txt, '
            "or on standard input (one per line)."
        )
    if not found:
        raise ValueError(f"{source} holds no sentences (it is empty or blank); give one sentence per line.")
    return found


def format_table(predictions: Iterable[Prediction]) -> str:
    """A fixed-width table: label, probability of acceptable, sentence."""
    lines = [f"{'label':<12}  {'p(acceptable)':>13}  sentence"]
    lines += [f"{p.label:<12}  {p.prob_acceptable:>13.4f}  {p.sentence}" for p in predictions]
    return "\n".join(lines)


def format_jsonl(predictions: Iterable[Prediction]) -> str:
    """One JSON object per line: sentence (its characters as given, not \\u escapes), label, prob_acceptable."""
    return "\n".join(
        json.dumps(
            {"sentence": p.sentence, "label": p.label, "prob_acceptable": round(p.prob_acceptable, 6)},
            ensure_ascii=False,
        )
        for p in predictions
    )


def format_tsv(predictions: Iterable[Prediction]) -> str:
    """The columns of a run's `<split>_predictions.tsv` (recipe/reports/predictions.py), label and source empty."""
    # p > 0.5 is the argmax of two softmax probabilities (a tie goes to index 0, unacceptable, in both).
    rows = (
        ("", "", int(p.prob_acceptable > 0.5), f"{p.prob_acceptable:.6f}", p.sentence) for p in predictions
    )
    return tsv_text(PREDICTION_COLUMNS, rows).rstrip("\n")


def build_predict_parser() -> argparse.ArgumentParser:
    """Flags of `run_cola.py predict`."""
    parser = argparse.ArgumentParser(
        prog="run_cola.py predict",
        description="Label sentences as acceptable/unacceptable with a model trained by run_cola.py "
        '(the same as transformers.pipeline("text-classification", model=MODEL_DIR)).',
    )
    parser.add_argument("sentences", nargs="*", help="Sentences to label (else --file or standard input).")
    parser.add_argument("--model_dir", required=True, help="The --output_dir of a training run.")
    parser.add_argument("--file", default=None, help="A UTF-8 text file, one sentence per line ('-': stdin).")
    parser.add_argument(
        "--format",
        choices=("table", "jsonl", "tsv"),
        default="table",
        help="Output format; tsv: the columns of a run's <split>_predictions.tsv (label empty).",
    )
    parser.add_argument(
        "--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="Sentences per forward pass."
    )
    parser.add_argument(
        "--max_seq_length", type=int, default=None, help="Override the training run's truncation length."
    )
    parser.add_argument(
        "--acceptable_label",
        default=None,
        help="The model's label (name or index) that means acceptable. Default: the label named "
        "'acceptable', else index 1 (CoLA's convention), for models saved by other tools (LABEL_0/LABEL_1).",
    )
    parser.add_argument("--use_cpu", action="store_true", help="Stay on the CPU even when a GPU is present.")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "int8"),
        default="torch",
        help="torch: the trained model (fp32); onnx / int8: OUT/onnx/model.onnx / model_int8.onnx written by "
        "`run_cola.py export` (ONNX Runtime on the CPU; see onnx/export_report.md for how int8 scored).",
    )
    return parser


def predict_cli(argv: list[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Entry point of `python run_cola.py predict`; returns the exit status.

    Raises:
        CheckpointError: --model_dir is not a trained model, or --acceptable_label is not one of its
            labels (cli() prints it as one clean error).
    """
    parser = build_predict_parser()
    options = parser.parse_args(argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if options.batch_size < 1:
        parser.error(f"--batch_size must be at least 1; got {options.batch_size}.")
    if options.max_seq_length is not None and options.max_seq_length < 3:
        parser.error(f"--max_seq_length must be at least 3 ([CLS] word [SEP]); got {options.max_seq_length}.")
    try:
        sentences = gather_sentences(options.sentences, options.file, stdin)
    except ValueError as err:
        parser.error(str(err))
    model_dir = Path(options.model_dir)
    # The hardware layer decides, as for training (tests pin it): the GPU when there is one, unless --use_cpu.
    machine = hardware.detect_hardware(use_cpu=options.use_cpu or options.backend != "torch")
    if options.backend != "torch":
        # ONNX Runtime's CPU build: one intra-op thread per core the process may use.
        predictions = predict_with_onnx(sentences, model_dir, options.backend, options, machine.cpu_count)
    else:
        classifier = load_cola_pipeline(model_dir, machine.device_type)
        acceptable = acceptable_label(classifier.model.config.id2label, options.acceptable_label, model_dir)
        max_seq_length = training_max_seq_length(model_dir, classifier, options.max_seq_length)
        predictions = predict_sentences(sentences, classifier, max_seq_length, acceptable, options.batch_size)
    formatters = {"table": format_table, "jsonl": format_jsonl, "tsv": format_tsv}
    try:
        formatted = formatters[options.format](predictions)
    except ValueError as err:  # a tab inside a sentence cannot go into a TSV row
        parser.error(str(err))
    print(formatted, file=stdout)
    return 0
