"""Resume only the same run: the settings that shape the result, recorded in every checkpoint and compared
before a run resumes from one.

`result_settings` flattens the argument dataclasses (every flag by its name, plus the world size) minus
the settings that cannot change the trained weights (logging, evaluation batch size, reporting, output
options: `NOT_RESULT_SHAPING`). `RunSettingsCallback` stores them in each checkpoint's
`trainer_state.json` through the Trainer's own `ExportableState` mechanism, so they are written in the
same file, at the same moment, as the mark of a finished save. `check_same_run` compares them with the
current run's and refuses the resume with every differing key, old -> new.

A checkpoint saved before this module existed has no recorded settings: the run resumes from it with a
warning (nothing to compare; refusing would strand every existing output folder).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState

from recipe.training.arguments import ConfigError, DataArguments, ModelArguments, RecipeArguments

logger = logging.getLogger(__name__)

TRAINER_STATE_FILE = "trainer_state.json"
# Settings that do not change the trained weights: what is logged or reported, how evaluation is
# batched, where files and caches go, how the folder is handled, and the search's own options.
NOT_RESULT_SHAPING = frozenset(
    {
        # TrainingArguments
        "output_dir",
        "resume_from_checkpoint",
        "do_eval",
        "do_predict",
        "per_device_eval_batch_size",
        "eval_accumulation_steps",
        "eval_do_concat_batches",
        "eval_on_start",
        "eval_use_gather_object",
        "batch_eval_metrics",
        "prediction_loss_only",
        "include_for_metrics",
        "include_num_input_tokens_seen",
        "logging_strategy",
        "logging_steps",
        "logging_first_step",
        "logging_nan_inf_filter",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "report_to",
        "run_name",
        "project",
        "disable_tqdm",
        "skip_memory_metrics",
        "debug",
        "dataloader_num_workers",
        "dataloader_pin_memory",
        "dataloader_persistent_workers",
        "dataloader_prefetch_factor",
        "dataloader_multiprocessing_context",
        "save_total_limit",
        "save_safetensors",
        "save_on_each_node",
        "save_only_model",
        "restore_callback_states_from_checkpoint",
        "torch_empty_cache_steps",
        "ddp_timeout",
        "local_rank",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "trackio_space_id",
        "trackio_bucket_id",
        "trackio_static_space_id",
        # ModelArguments: where the model is cached and what loading it may do, not which model
        "cache_dir",
        "trust_remote_code",
        "allow_pickle_checkpoint",
        # DataArguments: tokenization workers, download location, evaluation order
        "preprocessing_num_workers",
        "data_cache_dir",
        "download",
        "order_eval_by_length",
        "annotations",
        # RecipeArguments: folder handling, reports, and `run_cola.py search` options
        "overwrite_output",
        "fallback_to_previous_checkpoint",
        "write_report",
        "model_license",
        "n_trials",
    }
)
NOT_RESULT_SHAPING_PREFIXES = ("search_",)


def result_shaping(key: str) -> bool:
    """Whether a setting can change the trained weights (tokens are never recorded)."""
    return (
        key not in NOT_RESULT_SHAPING
        and not key.startswith(NOT_RESULT_SHAPING_PREFIXES)
        and not key.endswith("_token")
    )


def json_value(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists, enums and paths strings)."""
    return json.loads(json.dumps(value, default=str))


def result_settings(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> dict[str, Any]:
    """The settings that shape this run's result, by flag name, plus `world_size`.

    Call after `apply_global_batch_size`, so the batch and accumulation are the effective ones.
    """
    settings: dict[str, Any] = {}
    for args in (model_args, data_args, recipe_args):  # their flags (init fields), not run records
        settings.update({f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init})
    settings.update(training_args.to_dict())  # enums as their values
    shaping = {key: json_value(value) for key, value in settings.items() if result_shaping(key)}
    # The data order and the per-device batch follow the number of processes.
    shaping["world_size"] = training_args.world_size
    return dict(sorted(shaping.items()))


class RunSettingsCallback(TrainerCallback, ExportableState):
    """Store the run's result-shaping settings in every checkpoint's trainer_state.json.

    `ExportableState`: the Trainer writes `state()` into `stateful_callbacks` of trainer_state.json in
    `_save_checkpoint` (transformers 5.x), the file whose presence marks a finished save.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    def state(self) -> dict[str, Any]:
        return {"args": {"settings": self.settings}, "attributes": {}}

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # A resumed checkpoint from before this callback existed has no entry, and the Trainer's save
        # looks the entry up by name.
        state.stateful_callbacks[type(self).__name__] = self.state()


def recorded_settings(checkpoint: Path) -> dict[str, Any] | None:
    """The settings the run that saved `checkpoint` started with; None when it recorded none."""
    try:
        state = json.loads((checkpoint / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
        return dict(state["stateful_callbacks"][RunSettingsCallback.__name__]["args"]["settings"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for each result-shaping setting both record with different values.

    A key only one side records (a flag added or removed between recipe/transformers versions) is
    logged, not compared: its absence says nothing about the value the other run used.
    """
    one_sided = sorted(key for key in set(old) ^ set(new) if result_shaping(key))
    if one_sided:
        logger.warning(
            "Not compared with the checkpoint's run (recorded by only one of the two runs): %s",
            ", ".join(one_sided),
        )
    return [
        (key, old[key], new[key])
        for key in sorted(set(old) & set(new))
        if result_shaping(key) and json_value(old[key]) != json_value(new[key])
    ]


def changed_settings_message(
    checkpoint: Path, changes: Iterable[tuple[str, Any, Any]], explicit: bool
) -> str:
    """The refusal: which checkpoint, each key old -> new, and the ways out."""
    lines = [f"  {key}: {json.dumps(old)} -> {json.dumps(new)}" for key, old, new in changes]
    where = "--resume_from_checkpoint" if explicit else "--output_dir"
    ways_out = (
        "Resume with the settings it was started with, or drop --resume_from_checkpoint to start a "
        "new run (with another --output_dir)."
        if explicit
        else "Resume with the settings it was started with; or pass --overwrite_output to delete its "
        "checkpoints and start over; or choose another --output_dir for the new settings."
    )
    return (
        f"{where}: {checkpoint} was saved by a run started with other settings; resuming it would mix "
        f"two runs in one result. Changed:\n" + "\n".join(lines) + f"\n{ways_out}"
    )


def check_same_run(checkpoints: Iterable[Path], settings: Mapping[str, Any], explicit: bool = False) -> None:
    """Refuse to resume when the newest checkpoint that recorded settings had other result-shaping ones.

    Reads only; changes nothing on disk. Without any recorded settings (a folder from before settings
    were recorded) it warns and lets the run resume.

    Raises:
        ConfigError: listing each changed key (old -> new) and the ways out.
    """
    checkpoints = list(checkpoints)
    for checkpoint in checkpoints:
        old = recorded_settings(checkpoint)
        if old is None:
            continue
        changes = changed_settings(old, settings)
        if changes:
            raise ConfigError(changed_settings_message(checkpoint, changes, explicit))
        return
    if checkpoints:
        logger.warning(
            "%s recorded no run settings (saved before the recipe recorded them): resuming without "
            "checking that this run's settings are the same as that run's.",
            ", ".join(str(path) for path in checkpoints),
        )
