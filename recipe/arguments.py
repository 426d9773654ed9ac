"""Command-line and YAML arguments: `ModelArguments`, `DataArguments`, the stock `TrainingArguments`
and `RecipeArguments` (run behaviour around the loop).

A YAML file given with `--config` sets defaults, command-line flags override them, and an unknown key
in either place is an error that names it. Every YAML key is a field of one of the three dataclasses.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

DEFAULT_DATA_DIR = "data/cola_public"

# The tutorial's settings ("BERT Fine-Tuning Tutorial with PyTorch"), applied as parser defaults so a
# bare `python run_cola.py --model_name_or_path X --data_dir Y` does the tutorial's job. Only the
# Trainer's own knobs, with the tutorial's values; nothing is re-declared.
TUTORIAL_TRAINING_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/cola",
    "do_train": True,
    "do_eval": True,
    "per_device_train_batch_size": 32,
    # Evaluation needs no gradients or optimizer state, so a larger batch is free speed.
    "per_device_eval_batch_size": 128,
    "learning_rate": 2e-5,
    "adam_epsilon": 1e-8,
    "weight_decay": 0.0,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "num_train_epochs": 4,
    "max_grad_norm": 1.0,
    "seed": 42,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "steps",
    "logging_steps": 40,
    "report_to": "none",
}


@dataclass
class ModelArguments:
    """Which checkpoint to fine-tune, and how to load it."""

    model_name_or_path: str = field(
        default="bert-base-uncased",
        metadata={
            "help": "A Hugging Face Hub model id (needs a network) or a local folder saved by save_pretrained."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer id or folder, when it differs from --model_name_or_path."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})
    model_revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit id."})
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run custom modelling code shipped with a checkpoint. Off: only enable for code you trust."
        },
    )
    allow_pickle_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "Accept weights stored only as pickle (pytorch_model.bin). Off: weights load from "
            "safetensors, and a pickle-only checkpoint is refused (unpickling can run code)."
        },
    )


@dataclass
class DataArguments:
    """Where CoLA comes from and how it is turned into model inputs."""

    data_dir: str = field(
        default=DEFAULT_DATA_DIR,
        metadata={
            "help": "A CoLA release folder holding raw/in_domain_train.tsv, raw/in_domain_dev.tsv and "
            "(optionally) raw/out_of_domain_dev.tsv."
        },
    )
    max_seq_length: int = field(
        default=64,
        metadata={"help": "Longer sentences are truncated (the tutorial: 64; CoLA's longest is 47)."},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every sentence to max_seq_length (the tutorial's way, for static shapes). "
            "Off: pad each batch to its longest sentence, which does the same maths with less padding."
        },
    )
    validation_split: float = field(
        default=0.1,
        metadata={"help": "Share of in_domain_train held out, with the seed, for per-epoch validation."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (quick runs, debugging)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (datasets.map num_proc)."}
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < 3:
            raise ValueError(
                f"--max_seq_length must be at least 3 ([CLS] word [SEP]); got {self.max_seq_length}."
            )
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(f"--validation_split must be in [0, 1); got {self.validation_split}.")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"--max_train_samples must be positive; got {self.max_train_samples}.")


@dataclass
class RecipeArguments:
    """How a run behaves around the training loop (output folder, resuming, reports)."""

    overwrite_output: bool = field(
        default=False,
        metadata={
            "help": "Replace a finished run in --output_dir. Without it, a folder holding a finished run "
            "and no checkpoint to resume is refused (transformers 5 removed overwrite_output_dir)."
        },
    )
    fallback_to_previous_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "When the last checkpoint in --output_dir is incomplete or truncated, rename it "
            "corrupt-checkpoint-N and resume from the previous valid one. Off: stop with an error naming it."
        },
    )


ARGUMENT_DATACLASSES = (ModelArguments, DataArguments, TrainingArguments, RecipeArguments)


class ConfigError(ValueError):
    """A config file or flag that cannot be used; the message names it and says what to do."""


def build_parser() -> HfArgumentParser:
    """The parser for `run_cola.py`: the argument dataclasses, `--config`, and the tutorial defaults."""
    parser = HfArgumentParser(ARGUMENT_DATACLASSES)
    parser.add_argument(
        "--config",
        type=str,
        default=None,
        help="A YAML file of defaults (keys are the flags below, without --); flags on the command line win.",
    )
    parser.set_defaults(**TUTORIAL_TRAINING_DEFAULTS)
    return parser


def known_keys(parser: argparse.ArgumentParser) -> set[str]:
    """The option names the parser accepts (its dataclass fields), without `--config` and `--help`."""
    return {action.dest for action in parser._actions if action.dest not in ("help", "config")}


def load_config_file(path: str | Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read a YAML config and check that every key is a known argument.

    Raises:
        ConfigError: the file is missing, is not a mapping, or has an unknown key (named, with a suggestion).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Config file not found: {path}. Pass an existing YAML file, e.g. --config configs/bert-base-uncased.yaml."
        )
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: expected a mapping of argument names to values, got {type(values).__name__}."
        )
    allowed = known_keys(parser)
    for key in values:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{path}: unknown key '{key}'.{hint} Keys are the flags of `python run_cola.py --help`."
            )
    return values


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, TrainingArguments, RecipeArguments]:
    """Parse `argv` (default: sys.argv[1:]) into the argument dataclasses.

    Order of precedence: command-line flag > `--config` YAML > tutorial defaults > dataclass defaults.
    An unknown flag makes argparse exit with an error naming it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    config_only = argparse.ArgumentParser(add_help=False)
    config_only.add_argument("--config", type=str, default=None)
    pre, _ = config_only.parse_known_args(argv)
    if pre.config:
        parser.set_defaults(**load_config_file(pre.config, parser))
    *outputs, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    unknown = [arg for arg in remaining if arg.startswith("-")] or remaining
    if unknown:
        flag = unknown[0].split("=")[0]
        close = difflib.get_close_matches(flag.lstrip("-"), sorted(known_keys(parser)), n=1)
        hint = f" Did you mean '--{close[0]}'?" if close else ""
        raise ConfigError(f"unknown argument '{flag}'.{hint} See `python run_cola.py --help`.")
    model_args, data_args, training_args, recipe_args = outputs[:4]
    return model_args, data_args, training_args, recipe_args
