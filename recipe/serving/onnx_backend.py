"""A model exported by `run_cola.py export` (recipe/serving/export.py), run with ONNX Runtime.

This module imports numpy, onnxruntime (when a model is opened) and tokenizers (the Rust tokenizer behind transformers' fast
tokenizers) and nothing of torch or transformers, so `predict --backend onnx|int8` computes without them
(run_cola.py itself still imports transformers to start). The folder `OUT/onnx/` holds `model.onnx`
(fp32), `model_int8.onnx` (with --int8), the tokenizer and `config.json` (the label names).

Inputs are batched as in training's evaluation: sorted by length, each batch padded to its longest
sentence (padding is masked out of attention), results put back in input order.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tokenizers

if TYPE_CHECKING:
    import onnxruntime

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
# Sentences per batch of `predict` (every backend) and of export's check. Dynamic int8 quantizes each batch's
# activations with one scale per tensor, padding included, so int8 labels depend on the batching (1-2% of
# in-domain dev labels changed between batch sizes 1, 8, 32 and 64 on a fine-tuned MiniLM): the check
# measures int8 as predict runs it by default.
DEFAULT_BATCH_SIZE = 64
# `predict --backend` -> the model file it runs.
BACKEND_FILES = {"onnx": FP32_FILE, "int8": INT8_FILE}
# The tokenizer output each model input is read from (`tokenizers.Encoding` attribute names).
ENCODING_FIELDS = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}

BatchRunner = Callable[[dict[str, np.ndarray]], np.ndarray]


class OnnxModelError(ValueError):
    """An exported folder or model file that is missing or does not load (the message names the path)."""


def missing_export_packages(names: Sequence[str] = ("onnxruntime",)) -> list[str]:
    """The packages of the `export` extra among `names` that are not installed."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def require_export_packages(names: Sequence[str] = ("onnxruntime",)) -> None:
    """Raises OnnxModelError naming the missing packages and the install command."""
    missing = missing_export_packages(names)
    if missing:
        raise OnnxModelError(
            f"{', '.join(missing)} not installed: the ONNX export and backends need the `export` extra. "
            'Install it with: pip install -e ".[export]" (make export does so).'
        )


def open_session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on the CPU for `path`; `threads`: intra-op threads (None: ONNX Runtime's choice).

    Raises:
        OnnxModelError: the file is missing or ONNX Runtime cannot load it (damaged, not ONNX).
    """
    require_export_packages()
    import onnxruntime  # imported here: the base install (torch predict) runs without the export extra

    if not path.is_file():
        raise OnnxModelError(
            f"{path}: no such file. Write it with `python run_cola.py export --model_dir OUT` (--int8 for "
            f"{INT8_FILE})."
        )
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise OnnxModelError(
            f"{path} does not load in ONNX Runtime ({type(err).__name__}: {first_line}). It is damaged or "
            "not an ONNX model: export again with `python run_cola.py export --model_dir OUT`."
        ) from err


def session_runner(session: onnxruntime.InferenceSession) -> BatchRunner:
    """A function from a padded batch (name -> int array) to the session's logits (n, 2)."""
    input_names = [node.name for node in session.get_inputs()]
    output_name = session.get_outputs()[0].name

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([output_name], {name: batch[name].astype(np.int64) for name in input_names})[0]

    return run


def pad_batch(rows: Sequence[Mapping[str, Sequence[int]]], pad_token_id: int) -> dict[str, np.ndarray]:
    """Rows of token lists as (n, longest) int64 arrays; input_ids padded with `pad_token_id`, the rest with 0."""
    longest = max(len(row["input_ids"]) for row in rows)
    batch = {}
    for name in rows[0]:
        filler = pad_token_id if name == "input_ids" else 0
        batch[name] = np.array(
            [list(row[name]) + [filler] * (longest - len(row[name])) for row in rows], dtype=np.int64
        )
    return batch


def logits_in_order(
    run: BatchRunner, rows: Sequence[Mapping[str, Sequence[int]]], pad_token_id: int, batch_size: int
) -> np.ndarray:
    """Logits (n, 2) of every row in input order; batches of similar length (a stable sort, longest first)."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"]))
    logits: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        batch_logits = np.asarray(run(pad_batch([rows[i] for i in chosen], pad_token_id)), dtype=np.float32)
        if logits is None:
            logits = np.empty((len(rows), batch_logits.shape[-1]), dtype=np.float32)
        logits[np.asarray(chosen)] = batch_logits
    return logits if logits is not None else np.empty((0, 2), dtype=np.float32)


def read_id2label(folder: Path) -> dict[int, str]:
    """The label names of the exported model (`config.json` beside it).

    Raises:
        OnnxModelError: no readable config.json with id2label.
    """
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return {int(index): str(name) for index, name in config["id2label"].items()}
    except (OSError, ValueError, KeyError) as err:
        raise OnnxModelError(
            f"{path}: no readable config with id2label ({type(err).__name__}). Export again with "
            "`python run_cola.py export --model_dir OUT`."
        ) from err


def pad_token_id_of(folder: Path, tokenizer: tokenizers.Tokenizer) -> int:
    """The id of the tokenizer's pad token (tokenizer_config.json), else 0 (only masked positions hold it)."""
    config_path = folder / "tokenizer_config.json"
    pad_token = "[PAD]"
    if config_path.is_file():
        pad_token = json.loads(config_path.read_text(encoding="utf-8")).get("pad_token") or pad_token
    token_id = tokenizer.token_to_id(str(pad_token))
    return 0 if token_id is None else token_id


class OnnxClassifier:
    """An exported CoLA model (`OUT/onnx/`) with its tokenizer, truncating as training did."""

    def __init__(self, folder: Path, model_file: str, max_seq_length: int, threads: int | None = None):
        """Raises OnnxModelError: the folder, the model file or the tokenizer is missing or does not load."""
        if not folder.is_dir():
            raise OnnxModelError(
                f"{folder}: no such folder. Export the model first: `python run_cola.py export --model_dir OUT`."
            )
        tokenizer_path = folder / TOKENIZER_FILE
        try:
            self.tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        except Exception as err:  # tokenizers raises a bare Exception for a missing or broken file
            raise OnnxModelError(
                f"{tokenizer_path}: no fast tokenizer ({err}). Export again with `python run_cola.py export`."
            ) from err
        # The run's truncation (max_seq_length), no padding: batches are padded by `pad_batch`.
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()
        self.pad_token_id = pad_token_id_of(folder, self.tokenizer)
        self.id2label = read_id2label(folder)
        self.session = open_session(folder / model_file, threads)
        self.input_names = [node.name for node in self.session.get_inputs()]

    def encode(self, sentences: Sequence[str]) -> list[dict[str, list[int]]]:
        """Token ids of each sentence (`[CLS] sentence [SEP]`, truncated), only the inputs the model takes."""
        encodings = self.tokenizer.encode_batch(list(sentences))
        return [
            {name: list(getattr(encoding, ENCODING_FIELDS[name])) for name in self.input_names}
            for encoding in encodings
        ]

    def logits(self, sentences: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """(n, 2) logits of `sentences`, in input order."""
        return logits_in_order(
            session_runner(self.session), self.encode(sentences), self.pad_token_id, batch_size
        )
