"""The MCC re-checked after export: torch, ONNX fp32 and int8 on the run's own dev splits, side by side.

The splits are the ones training evaluated (validation, then each scored split: recipe/training/splits.py),
loaded from the run's `run_args.json` (data location, validation seed, truncation) and tokenized as
training did; every backend gets the same padded batches. Per split: MCC and accuracy of each backend,
label agreement with torch, the largest logit difference from torch, and int8 - torch MCC with a 95% paired
bootstrap interval (the resampling of `run_cola.py compare`: recipe/reports/phenomena.py).

Written: `OUT/onnx/export_report.md`, `OUT/onnx/export_predictions.tsv` (every logit the report's numbers
come from) and a section of the model card (`OUT/README.md`), replaced on each export.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from recipe.reports.phenomena import N_RESAMPLES, bootstrap_indices, interval_text, mcc_rows
from recipe.reports.plots import markdown_table
from recipe.reports.predictions import read_predictions_tsv, tsv_text
from recipe.reports.run_args import RUN_ARGS_FILE
from recipe.runtime.io import write_text_atomic
from recipe.serving.onnx_backend import DEFAULT_BATCH_SIZE, BatchRunner, logits_in_order
from recipe.training import splits
from recipe.training.arguments import DataArguments
from recipe.training.data import load_cola_splits
from recipe.training.model import CheckpointError
from recipe.training.splits import Split
from recipe.training.tokenization import tokenize_sentences

TORCH, ONNX_FP32, INT8 = "torch", "onnx", "int8"
BACKEND_TITLES = {TORCH: "torch fp32", ONNX_FP32: "ONNX fp32", INT8: "ONNX int8"}
# fp32 ONNX runs the same float32 graph with other kernels: differences are rounding (1.5e-6 to 3.2e-6 on three
# fine-tuned all-MiniLM-L6-v2, 1e-7 on the tiny test model); 1e-4 leaves room for deeper models.
FP32_LOGIT_TOLERANCE = 1e-4
# int8 is "not recommended" when it agrees with torch on fewer labels than this on any evaluated split: three
# fine-tuned all-MiniLM-L6-v2 (per-channel int8, batches of 32 or 64, no MCC interval below 0) agreed on 95.5% to
# 98.9%; per-tensor int8 on one of them, 93.3%.
INT8_MIN_AGREEMENT = 0.95
EXPORT_REPORT_FILE = "export_report.md"
EXPORT_PREDICTIONS_FILE = "export_predictions.tsv"
CARD_START = "<!-- onnx-export:start -->"
CARD_END = "<!-- onnx-export:end -->"


@dataclass
class SplitCheck:
    """One split: its sentences and labels in dataset order, and each backend's logits for them."""

    split: Split
    sentences: list[str]
    labels: np.ndarray
    logits: dict[str, np.ndarray] = field(default_factory=dict)

    def predictions(self, backend: str) -> np.ndarray:
        return np.argmax(self.logits[backend], axis=-1)

    def mcc(self, backend: str) -> float:
        return float(mcc_rows(self.predictions(backend), self.labels))

    def accuracy(self, backend: str) -> float:
        return float((self.predictions(backend) == self.labels).mean())

    def agreement(self, backend: str) -> float:
        """Share of sentences whose label equals torch's."""
        return float((self.predictions(backend) == self.predictions(TORCH)).mean())

    def max_logit_difference(self, backend: str) -> float:
        # In float64: the difference of two float32 values is then exact, as recomputed from the TSV.
        return float(np.abs(self.logits[backend].astype(np.float64) - self.logits[TORCH]).max())

    def mcc_difference(self, backend: str) -> tuple[float, float, float]:
        """`backend` - torch MCC and its 95% paired bootstrap interval (the same resampled sentences score both)."""
        resamples = bootstrap_indices(len(self.labels))
        labels = self.labels[resamples]
        differences = mcc_rows(self.predictions(backend)[resamples], labels) - mcc_rows(
            self.predictions(TORCH)[resamples], labels
        )
        low, high = np.percentile(differences, [2.5, 97.5])
        return self.mcc(backend) - self.mcc(TORCH), float(low), float(high)


@dataclass
class ExportCheck:
    """Every evaluated split, and the verdicts drawn from them."""

    splits: list[SplitCheck]

    def backends(self) -> list[str]:
        return list(self.splits[0].logits) if self.splits else []

    def fp32_matches(self) -> bool:
        return all(check.max_logit_difference(ONNX_FP32) <= FP32_LOGIT_TOLERANCE for check in self.splits)

    def int8_problems(self) -> list[str]:
        """Why int8 is not recommended (empty: it is, or there is no int8 model)."""
        if INT8 not in self.backends():
            return []
        problems = []
        for check in self.splits:
            _, _, high = check.mcc_difference(INT8)
            if high < 0:
                problems.append(f"{check.split.name}: the int8 - torch MCC interval lies wholly below 0")
            if check.agreement(INT8) < INT8_MIN_AGREEMENT:
                problems.append(
                    f"{check.split.name}: int8 agrees with torch on {check.agreement(INT8):.2%} of labels "
                    f"(< {INT8_MIN_AGREEMENT:.0%})"
                )
        return problems


def run_data_args(model_dir: Path, data_dir: str | None) -> tuple[DataArguments, int]:
    """The run's data arguments and seed from its run_args.json; `data_dir` replaces its data location.

    Raises:
        CheckpointError: no run_args.json (not a training run of this recipe) or an unreadable one.
    """
    path = model_dir / RUN_ARGS_FILE
    if not path.is_file():
        raise CheckpointError(
            f"--model_dir {model_dir} has no {RUN_ARGS_FILE}: export re-checks the MCC on the run's dev splits "
            "and reads them from it. Pass the --output_dir of a finished training run of this recipe."
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        saved = record["data_args"]
        seed = int(record["settings"]["seed"]["value"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"{path}: not a run_args.json this recipe wrote ({type(err).__name__})."
        ) from err
    known = {key: value for key, value in saved.items() if key in DataArguments.__dataclass_fields__}
    if data_dir is not None:
        known |= {"data_dir": data_dir, "dataset_name": None}
    return DataArguments(**known), seed


def check_same_sentences(model_dir: Path, split: Split, sentences: Sequence[str]) -> None:
    """The run's own `<split>_predictions.tsv`, where written, must list the same sentences in the same order.

    Raises:
        CheckpointError: they differ (the data changed since training; names the file and the first line).
    """
    path = model_dir / f"{split.name}_predictions.tsv"
    if not path.is_file():
        return
    written = read_predictions_tsv(path).sentences
    if written == list(sentences):
        return
    line = next(
        (i + 2 for i, (a, b) in enumerate(zip(written, sentences, strict=False)) if a != b),
        min(len(written), len(sentences)) + 2,
    )
    raise CheckpointError(
        f"{path}, line {line}: the run evaluated other {split.name} sentences than the data loads now "
        f"({len(written)} vs {len(sentences)}). Pass --data_dir with the data the run was trained on."
    )


def encode_split(
    dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, data_args: DataArguments
) -> list[dict[str, list[int]]]:
    """Each sentence's model inputs, tokenized as training tokenized it (recipe/training/tokenization.py)."""
    encoded = tokenize_sentences(
        {"sentence": list(dataset["sentence"])},
        tokenizer,
        data_args.max_seq_length,
        data_args.pad_to_max_length,
    )
    names = [name for name in tokenizer.model_input_names if name in encoded]
    return [{name: encoded[name][i] for name in names} for i in range(len(dataset))]


def torch_runner(model: PreTrainedModel) -> BatchRunner:
    """A padded batch -> the torch model's fp32 logits."""

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            inputs = {name: torch.from_numpy(values) for name, values in batch.items()}
            return model(**inputs).logits.float().numpy()

    return run


def check_export(
    model_dir: Path,
    data_dir: str | None,
    tokenizer: PreTrainedTokenizerBase,
    runners: Mapping[str, BatchRunner],
) -> ExportCheck:
    """Evaluate every backend in `runners` (torch first) on the run's evaluated splits, in dataset order.

    Raises:
        CheckpointError: no run_args.json, or the data holds other sentences than the run evaluated.
        DataError: the run's data is not there (recipe/training/data.py names what is missing).
    """
    data_args, seed = run_data_args(model_dir, data_dir)
    raw = load_cola_splits(data_args, seed=seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    checks = []
    for split in splits.evaluated(raw):
        dataset = raw[split.name]
        check = SplitCheck(split, list(dataset["sentence"]), np.asarray(dataset["label"], dtype=np.int64))
        check_same_sentences(model_dir, split, check.sentences)
        rows = encode_split(dataset, tokenizer, data_args)
        for backend, run in runners.items():
            check.logits[backend] = logits_in_order(run, rows, pad_id, DEFAULT_BATCH_SIZE)
        checks.append(check)
    if not checks:
        raise CheckpointError(
            f"{model_dir}: the run's data has no labeled split to check the export on (validation or dev)."
        )
    return ExportCheck(checks)


def scores_table(check: ExportCheck) -> str:
    """Per split and backend: MCC, accuracy, agreement with torch, largest logit difference, MCC - torch."""
    rows = []
    for split_check in check.splits:
        for backend in check.backends():
            vs_torch = ["", "", ""]
            if backend != TORCH:
                difference, low, high = split_check.mcc_difference(backend)
                vs_torch = [
                    f"{split_check.agreement(backend):.4f}",
                    f"{split_check.max_logit_difference(backend):.2e}",
                    f"{difference:+.4f} {interval_text(low, high)}",
                ]
            rows.append(
                [
                    split_check.split.name,
                    str(len(split_check.labels)),
                    BACKEND_TITLES[backend],
                    f"{split_check.mcc(backend):.4f}",
                    f"{split_check.accuracy(backend):.4f}",
                    *vs_torch,
                ]
            )
    header = ["split", "n", "backend", "MCC", "accuracy", "label agreement", "max logit diff", "MCC - torch"]
    return markdown_table(header, rows)


def verdict_lines(check: ExportCheck) -> list[str]:
    """The fp32 and int8 verdicts, one line each."""
    lines = [
        f"- ONNX fp32: {'matches' if check.fp32_matches() else '**does not match**'} torch (largest logit "
        f"difference {max(c.max_logit_difference(ONNX_FP32) for c in check.splits):.2e}, tolerance "
        f"{FP32_LOGIT_TOLERANCE:.0e})."
    ]
    if INT8 in check.backends():
        problems = check.int8_problems()
        if problems:
            lines.append("- ONNX int8: **not recommended**: " + "; ".join(problems) + ".")
        else:
            lines.append(
                f"- ONNX int8: recommended (no MCC interval wholly below 0, label agreement >= "
                f"{INT8_MIN_AGREEMENT:.0%} on every split)."
            )
    return lines


def report_markdown(check: ExportCheck, settings: Sequence[str]) -> str:
    """export_report.md: settings, verdicts and the per-split table."""
    return "\n".join(
        [
            "# ONNX export: the MCC re-checked",
            "",
            *settings,
            "",
            *verdict_lines(check),
            "",
            scores_table(check),
            "",
            f"Every backend ran the same batches: {DEFAULT_BATCH_SIZE} sentences, longest first, as `predict` "
            "batches by default (dynamic int8 labels depend on the batching; fp32 does not). "
            f"Label agreement and logit differences are against torch fp32. MCC - "
            f"torch: with a 95% paired bootstrap interval ({N_RESAMPLES} resamples of the split's sentences, "
            f"each scoring both backends). Every logit is in `{EXPORT_PREDICTIONS_FILE}`.",
            "",
        ]
    )


def predictions_tsv(check: ExportCheck) -> str:
    """export_predictions.tsv: split, label, each backend's two logits (float32, exact), sentence."""
    backends = check.backends()
    header = ["split", "label", *(f"{b}_logit_{i}" for b in backends for i in (0, 1)), "sentence"]
    rows = []
    for split_check in check.splits:
        for row, (label, sentence) in enumerate(zip(split_check.labels, split_check.sentences, strict=True)):
            logits = [f"{float(v):.9g}" for b in backends for v in split_check.logits[b][row]]
            rows.append([split_check.split.name, int(label), *logits, sentence])
    return tsv_text(header, rows)


def write_check_files(check: ExportCheck, folder: Path, settings: Sequence[str]) -> Path:
    """Write export_report.md and export_predictions.tsv into `folder`; returns the report's path."""
    write_text_atomic(folder / EXPORT_PREDICTIONS_FILE, predictions_tsv(check))
    return write_text_atomic(folder / EXPORT_REPORT_FILE, report_markdown(check, settings))


def card_section(check: ExportCheck) -> str:
    """The model card's export section (between markers, so the next export replaces it)."""
    return "\n".join(
        [
            CARD_START,
            "## Exported to ONNX",
            "",
            "`onnx/` holds the exported model (`python run_cola.py predict --model_dir . --backend onnx|int8`); "
            f"the full report is `onnx/{EXPORT_REPORT_FILE}`.",
            "",
            *verdict_lines(check),
            "",
            scores_table(check),
            CARD_END,
        ]
    )


def update_card(model_dir: Path, check: ExportCheck) -> Path:
    """Put the export section into OUT/README.md: replaced where there is one, else appended."""
    path = model_dir / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    section = card_section(check)
    start, end = text.find(CARD_START), text.find(CARD_END)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(CARD_END) :]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    return write_text_atomic(path, text)
