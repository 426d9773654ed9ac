"""A run's settings as values: every flag with its source, the ones that differ from the recipe's defaults,
and the command that repeats the run. The card, run_args.json and the search's best.yaml all ask here."""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
from typing import Any

from transformers import TrainingArguments

from recipe.runtime.redaction import REDACTED, is_credential
from recipe.training.arguments import DataArguments, ModelArguments, RecipeArguments, parse_args

logger = logging.getLogger(__name__)


def cli_value(value: Any) -> list[str]:
    """A dataclass value as the command-line words HfArgumentParser reads back."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    if isinstance(value, dict):
        return [json.dumps(value)]
    return [str(value)]


def arguments_as_dicts(*arguments: Any) -> list[dict[str, Any]]:
    """Each argument dataclass as a dict of its flags (init fields; TrainingArguments with enums as values),
    credentials masked: every file and table of settings is built from these dicts."""
    dicts = []
    for args in arguments:
        values = args.to_dict() if isinstance(args, TrainingArguments) else dataclasses.asdict(args)
        flags = {f.name for f in dataclasses.fields(args) if f.init}
        dicts.append(
            {
                key: REDACTED if is_credential(key) and value else value
                for key, value in values.items()
                if key in flags
            }
        )
    return dicts


def effective_settings(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> dict[str, dict[str, Any]]:
    """Every flag's effective value and where it came from (`recipe_args.setting_sources`): default,
    recipe, machine, config, flag or derived. Credentials are masked."""
    sources = recipe_args.setting_sources
    settings: dict[str, dict[str, Any]] = {}
    for values in arguments_as_dicts(model_args, data_args, training_args, recipe_args):
        for key, value in values.items():
            settings[key] = {"value": value, "source": sources.get(key, "default")}
    return settings


def reproduce_command(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> str:
    """`python run_cola.py ...` with every value that differs from the recipe's defaults, and every value
    chosen for the machine (bf16, use_cpu, batch sizes...) even where it equals a default, so that the
    command runs the same job on any machine.

    Built from the parsed arguments, not from sys.argv, so it is exact however the run was started
    (a --config file is inlined; tests calling main() get one too). The defaults compared against are
    the recipe's without the machine (`parse_args([], machine_settings=False)`): nothing is re-detected.
    """
    words = ["python", "run_cola.py"]
    for key, value in settings_differing_from_defaults(
        model_args, data_args, training_args, recipe_args
    ).items():
        if value is None:
            logger.info("reproduce command: --%s is None, which has no flag form; left out.", key)
            continue
        words += [f"--{key}", *cli_value(value)]
    return shlex.join(words)


def settings_differing_from_defaults(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> dict[str, Any]:
    """Every setting of this run whose value is not the recipe's default, plus every value chosen for the
    machine (bf16, use_cpu, optim, batch sizes: `setting_sources`) even where it equals a default, so the
    result runs the same job on another machine. Credentials are left out.

    The defaults compared against are the recipe's without the machine (`parse_args([],
    machine_settings=False)`): nothing is re-detected.
    """
    actual = arguments_as_dicts(model_args, data_args, training_args, recipe_args)
    defaults = arguments_as_dicts(*parse_args([], machine_settings=False))
    sources = recipe_args.setting_sources
    values: dict[str, Any] = {}
    for current, default_values in zip(actual, defaults, strict=True):
        for key, value in current.items():
            machine_chosen = sources.get(key) == "machine"
            if (value != default_values.get(key) or machine_chosen) and not is_credential(key):
                values[key] = value
    return values
