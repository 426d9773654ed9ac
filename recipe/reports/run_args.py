"""`run_args.json`: every effective setting of a run with its source, the reproducing command and the
versions; `predict` reads max_seq_length from it and `compare` reads a run's settings back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from recipe.runtime.versions import run_versions
from recipe.training.arguments import DataArguments, ModelArguments, RecipeArguments
from recipe.training.settings import arguments_as_dicts, effective_settings, reproduce_command

RUN_ARGS_FILE = "run_args.json"


def run_args_record(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> dict[str, Any]:
    """The arguments as given, every effective setting with its source, the command and the versions."""
    model_dict, data_dict, recipe_dict = arguments_as_dicts(model_args, data_args, recipe_args)
    return {
        "model_args": model_dict,
        "data_args": data_dict,
        "recipe_args": recipe_dict,
        "machine": recipe_args.machine,
        # Every effective setting (TrainingArguments too) with its source: default, recipe, machine, ...
        "settings": effective_settings(model_args, data_args, training_args, recipe_args),
        # The exact command, this machine's paths included (the card shows them as path/to/<name>).
        "reproduce_command": reproduce_command(model_args, data_args, training_args, recipe_args),
        "versions": run_versions(recipe_args.machine),  # recipe/runtime/versions.py
    }


def write_run_args(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> Path:
    """Write `run_args.json` into --output_dir; returns its path."""
    path = Path(training_args.output_dir) / RUN_ARGS_FILE
    record = run_args_record(model_args, data_args, training_args, recipe_args)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path
