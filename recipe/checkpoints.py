"""The output folder: resume from its last checkpoint, or refuse to overwrite a finished run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from recipe.arguments import ConfigError, RecipeArguments

logger = logging.getLogger(__name__)

# Files that only a finished run leaves behind (the Trainer writes them after training).
FINISHED_RUN_MARKERS = ("all_results.json", "train_results.json")


def resolve_resume_checkpoint(training_args: TrainingArguments, recipe_args: RecipeArguments) -> str | None:
    """Decide where training starts, before anything is written to `output_dir`.

    Returns the checkpoint to resume from: `--resume_from_checkpoint` when given, else the last
    `checkpoint-N` in `output_dir` (a run that was interrupted and started again with the same command),
    else None (a fresh start).

    Raises:
        ConfigError: `output_dir` holds a finished run and no checkpoint, and `--overwrite_output` is off.
    """
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    output_dir = Path(training_args.output_dir)
    if not training_args.do_train or not output_dir.is_dir():
        return None
    if recipe_args.overwrite_output:
        logger.warning("--overwrite_output: removing the previous run in %s", output_dir)
        shutil.rmtree(output_dir)
        return None
    last = get_last_checkpoint(str(output_dir))
    if last is not None:
        logger.info("Resuming from %s (the last checkpoint in --output_dir).", last)
        return last
    finished = [name for name in FINISHED_RUN_MARKERS if (output_dir / name).exists()]
    if finished:
        raise ConfigError(
            f"--output_dir {output_dir} already holds a finished run ({', '.join(finished)}) and no "
            "checkpoint to resume. Pass --overwrite_output to replace it, or choose another --output_dir."
        )
    return None
