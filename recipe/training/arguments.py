"""Parse the command line and the `--config` YAML into `ModelArguments`, `DataArguments`, the stock
`TrainingArguments` and `RecipeArguments` (the recipe's dataclasses: recipe/training/argument_dataclasses.py).

A YAML file given with `--config` sets defaults, command-line flags override them, and an unknown key
in either place is an error that names it. Every YAML key is a field of one of the three dataclasses.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from recipe.runtime import hardware as hw
from recipe.training.argument_dataclasses import ConfigError, DataArguments, ModelArguments, RecipeArguments
from recipe.training.best_model import best_model_defaults

# The tutorial's values for the Trainer's own knobs, so a bare `run_cola.py` does the tutorial's job.
TUTORIAL_TRAINING_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/cola",
    "do_train": True,
    "do_eval": True,
    "per_device_train_batch_size": 32,
    # Evaluation needs no gradients or optimizer state: a larger batch than training's. The fast settings
    # for this machine (recipe/runtime/hardware.py) replace it: 128 on GPUs, 32 on CPUs (less padding there).
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
    # Keep and end with the checkpoint of best validation MCC (not the last, not the lowest loss).
    # recipe/training/best_model.py switches load_best_model_at_end off where a run cannot support it.
    "load_best_model_at_end": True,
    "metric_for_best_model": "matthews_correlation",
    "greater_is_better": True,
}


ARGUMENT_DATACLASSES = (ModelArguments, DataArguments, TrainingArguments, RecipeArguments)


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


# Where a setting came from, weakest first ("derived": computed in the run, e.g. a per-device batch).
SOURCES = ("default", "recipe", "machine", "config", "flag", "derived")


def explicit_flags(argv: Sequence[str]) -> set[str]:
    """The option names given on the command line (`--lr=1` and `--learning-rate` spellings included)."""
    return {arg[2:].split("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")}


def training_settings_error(err: ValueError, keys: set[str]) -> ConfigError:
    """A TrainingArguments/accelerate refusal as one line that names the flag(s) to change."""
    message = " ".join(str(err).split())
    named = sorted(key for key in keys if key in message.replace("--", " ").replace("`", " ").split())
    flags = ", ".join(f"--{key}" for key in named) or "the training settings it names"
    return ConfigError(
        f"invalid combination of settings: {message} Change {flags} (`python run_cola.py env` shows what this "
        "machine supports and the defaults chosen for it)."
    )


def parse_args(
    argv: Sequence[str] | None = None,
    hardware: hw.Hardware | None = None,
    machine_settings: bool = True,
) -> tuple[ModelArguments, DataArguments, TrainingArguments, RecipeArguments]:
    """Parse `argv` (default: sys.argv[1:]) into the argument dataclasses.

    Order of precedence: command-line flag > `--config` YAML > settings for this machine
    (`recipe.runtime.hardware.machine_defaults`) > the recipe's (tutorial) defaults > dataclass defaults. Where each
    setting came from is kept in `recipe_args.setting_sources`.

    Args:
        argv: the command line, without the program name.
        hardware: the machine to choose defaults for; None detects this one.
        machine_settings: False leaves the machine out (the recipe's defaults, the same on every machine).

    Raises:
        ConfigError: an unknown key or flag, a bad value, or settings TrainingArguments refuses.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    config_only = argparse.ArgumentParser(add_help=False)
    config_only.add_argument("--config", type=str, default=None)
    config_only.add_argument("--use_cpu", type=string_to_bool, nargs="?", const=True, default=None)
    pre, _ = config_only.parse_known_args(argv)
    config_values = load_config_file(pre.config, parser) if pre.config else {}
    flags = explicit_flags(argv)
    explicit = set(config_values) | flags
    machine: dict[str, Any] = {}
    machine_name = ""
    if machine_settings:
        if hardware is None:
            use_cpu = pre.use_cpu if pre.use_cpu is not None else config_values.get("use_cpu", False)
            hardware = hw.detect_hardware(use_cpu=string_to_bool(use_cpu))
        machine = hw.without_explicit(hw.machine_defaults(hardware), explicit)
        machine_name = hardware.describe()
    parser.set_defaults(**machine)
    parser.set_defaults(**config_values)
    best_model = best_model_defaults(parser, argv)
    parser.set_defaults(**best_model)
    try:
        *outputs, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as err:  # TrainingArguments.__post_init__ refusing a combination
        if isinstance(err, ConfigError):
            raise
        raise training_settings_error(err, known_keys(parser)) from err
    unknown = [arg for arg in remaining if arg.startswith("-")] or remaining
    if unknown:
        flag = unknown[0].split("=")[0]
        close = difflib.get_close_matches(flag.lstrip("-"), sorted(known_keys(parser)), n=1)
        hint = f" Did you mean '--{close[0]}'?" if close else ""
        raise ConfigError(f"unknown argument '{flag}'.{hint} See `python run_cola.py --help`.")
    model_args, data_args, training_args, recipe_args = outputs[:4]
    recipe_defaults = {*TUTORIAL_TRAINING_DEFAULTS, *best_model}
    for key in sorted(known_keys(parser)):
        if key in flags:
            source = "flag"
        elif key in config_values:
            source = "config"
        elif key in machine:
            source = "machine"
        elif key in recipe_defaults:
            source = "recipe"
        else:
            source = "default"
        recipe_args.setting_sources[key] = source
    recipe_args.machine = machine_name
    return model_args, data_args, training_args, recipe_args
