"""The output folder: resume from its last valid checkpoint, or refuse to overwrite a finished run.

A checkpoint is checked before training resumes from it: a run killed while writing one (or a disk
that filled up) leaves a folder with missing or truncated files, and the Trainer would otherwise fail
deep inside `torch.load`, or worse, silently start a fresh optimizer when `optimizer.pt` is missing.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recipe.training.arguments import ConfigError, RecipeArguments
from recipe.training.model import CheckpointError
from recipe.training.run_settings import check_same_run

logger = logging.getLogger(__name__)

# Files that only a finished run leaves behind (the Trainer writes them after training).
FINISHED_RUN_MARKERS = ("all_results.json", "train_results.json")
CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")  # what the Trainer resumes from
# Renamed so the Trainer's `checkpoint-*` skips it: incomplete (save cut off) or corrupt (files damaged).
INCOMPLETE_PREFIX = "incomplete-"
CORRUPT_PREFIX = "corrupt-"
# The Trainer writes a checkpoint in this order: weights, optimizer/scheduler, RNG states, and
# trainer_state.json last; a missing trainer_state.json is the mark of a save that never finished.
TRAINER_STATE_FILE = "trainer_state.json"
TRAINING_STATE_FILES = ("optimizer.pt", "scheduler.pt")  # absent only with --save_only_model


class CorruptCheckpointError(CheckpointError):
    """A checkpoint folder that cannot be resumed from; the message names it and each bad file."""


def safetensors_problem(path: Path) -> str | None:
    """Check a .safetensors file's structure without loading it: header readable, data all there.

    The format is an 8-byte little-endian header length, a JSON header giving each tensor's byte
    range, then the data; a truncated file is shorter than the header says.
    """
    size = path.stat().st_size
    if size < 8:
        return f"{path.name} is truncated ({size} bytes)"
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        if 8 + header_len > size:
            return f"{path.name} is truncated (header of {header_len} bytes, file of {size})"
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{path.name} has an unreadable header"
    try:
        data_end = max(
            (int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"),
            default=0,
        )
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return f"{path.name} has an unreadable header"
    if 8 + header_len + data_end != size:
        return (
            f"{path.name} is truncated or padded ({size} bytes, its header says {8 + header_len + data_end})"
        )
    return None


def torch_archive_problem(path: Path) -> str | None:
    """Check a torch.save file (a zip archive): a truncated one has lost its central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = path.stat().st_size
            if any(info.header_offset + info.compress_size > size for info in archive.infolist()):
                return f"{path.name} is truncated"
    except (zipfile.BadZipFile, OSError) as err:
        return f"{path.name} is truncated or not a torch.save archive ({err})"
    return None


def weights_problems(folder: Path, allow_pickle: bool) -> list[str]:
    """Problems with the model weights of a checkpoint (safetensors, sharded or not)."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return [p for p in [safetensors_problem(single)] if p]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            return [f"{index.name} is not a valid safetensors index"]
        problems = []
        for shard in shards:
            shard_path = folder / shard
            problem = safetensors_problem(shard_path) if shard_path.is_file() else f"{shard} is missing"
            problems += [problem] if problem else []
        return problems
    pickled = folder / "pytorch_model.bin"
    if pickled.is_file():
        if not allow_pickle:
            return [
                "its weights are pickle only (pytorch_model.bin, no model.safetensors); pass "
                "--allow_pickle_checkpoint if you trust where it came from"
            ]
        return [p for p in [torch_archive_problem(pickled)] if p]
    return ["model weights are missing (no model.safetensors)"]


def checkpoint_problems(
    folder: str | Path, require_training_state: bool = True, allow_pickle: bool = False
) -> list[str]:
    """Everything that stops `folder` from being resumed from; an empty list means it looks whole.

    Checks structure, not values: trainer_state.json parses, the weights and the torch archives are
    complete (no file is loaded into memory).

    Args:
        require_training_state: the optimizer and scheduler states must be there (not with --save_only_model).
        allow_pickle: accept pickle-only weights (pytorch_model.bin).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems: list[str] = []
    state_file = folder / TRAINER_STATE_FILE
    if not state_file.is_file():
        problems.append(f"{TRAINER_STATE_FILE} is missing (the save did not finish)")
    else:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            if not isinstance(state.get("global_step"), int):
                problems.append(f"{TRAINER_STATE_FILE} has no global_step")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            problems.append(f"{TRAINER_STATE_FILE} is not valid JSON (truncated?)")
    problems += weights_problems(folder, allow_pickle)
    archives = [folder / name for name in TRAINING_STATE_FILES if (folder / name).exists()]
    archives += sorted(folder.glob("rng_state*.pth")) + [p for p in [folder / "scaler.pt"] if p.exists()]
    if require_training_state:
        problems += [f"{name} is missing" for name in TRAINING_STATE_FILES if not (folder / name).exists()]
    problems += [p for p in map(torch_archive_problem, archives) if p]
    return problems


def corrupt_checkpoint_message(folder: Path, problems: list[str], can_fall_back: bool) -> str:
    """Name the checkpoint and each problem, and say what the user can do."""
    fallback = (
        " Pass --fallback_to_previous_checkpoint to resume from the previous valid checkpoint instead"
        " (this one is then renamed corrupt-<name>), or delete it."
        if can_fall_back
        else ""
    )
    return (
        f"Checkpoint {folder} cannot be resumed from: {'; '.join(problems)}.{fallback} "
        "Or pass --overwrite_output to start the run over."
    )


def save_finished(folder: Path) -> bool:
    """Whether the Trainer finished saving `folder`: its last file, trainer_state.json, is valid JSON."""
    try:
        return isinstance(json.loads((folder / TRAINER_STATE_FILE).read_text(encoding="utf-8")), dict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def set_aside(checkpoint: Path, prefix: str, reason: str) -> Path:
    """Rename `checkpoint` to `<prefix><name>` so that neither we nor the Trainer resume from it."""
    target = checkpoint.with_name(prefix + checkpoint.name)
    if target.exists():
        shutil.rmtree(target)  # an older copy set aside for the same step
    checkpoint.rename(target)
    logger.warning(
        "Skipping %s (%s); renamed it %s. Trying the previous checkpoint.", checkpoint, reason, target.name
    )
    return target


def list_checkpoints(output_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders in `output_dir`, newest (highest N) first."""
    found = [p for p in output_dir.iterdir() if p.is_dir() and CHECKPOINT_NAME.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_NAME.match(p.name).group(1)), reverse=True)


def resolve_resume_checkpoint(
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
    allow_pickle: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> str | None:
    """Decide where training starts, before anything is written to `output_dir`.

    Returns the checkpoint to resume from: `--resume_from_checkpoint` when given, else the last valid
    `checkpoint-N` in `output_dir` (a run that was interrupted and started again with the same command),
    else None (a fresh start). A checkpoint whose save was cut off is moved aside (`incomplete-...`);
    a finished one with damaged files stops the run, or with --fallback_to_previous_checkpoint is moved
    aside (`corrupt-...`) too; either way the next older one is tried.

    With several processes the main process decides (and renames or removes) first; the others wait,
    then find the folder as it left it and reach the same answer (or the same error).

    Args:
        settings: this run's result-shaping settings (recipe/training/run_settings.py); when given, a resume from
            a checkpoint of a run started with other settings is refused before anything changes on disk.

    Raises:
        ConfigError: `output_dir` holds a finished run and no checkpoint, and `--overwrite_output` is off;
            or its checkpoints were saved by a run with other settings (each key named, old -> new).
        CorruptCheckpointError: the checkpoint to resume from has missing or truncated files (named).
    """
    # Only the main process saves checkpoints (unless save_on_each_node): it alone may remove or rename them.
    with training_args.main_process_first(
        desc="choosing the checkpoint", local=training_args.save_on_each_node
    ):
        return find_resume_checkpoint(training_args, recipe_args, allow_pickle, settings)


def find_resume_checkpoint(
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
    allow_pickle: bool,
    settings: Mapping[str, Any] | None,
) -> str | None:
    """`resolve_resume_checkpoint` on one process (see there)."""
    require_state = not training_args.save_only_model
    if training_args.resume_from_checkpoint:
        explicit = Path(training_args.resume_from_checkpoint)
        problems = checkpoint_problems(explicit, require_state, allow_pickle)
        if problems:
            raise CorruptCheckpointError(corrupt_checkpoint_message(explicit, problems, can_fall_back=False))
        if settings is not None:
            check_same_run([explicit], settings, explicit=True)
        return str(explicit)
    output_dir = Path(training_args.output_dir)
    if not training_args.do_train or not output_dir.is_dir():
        return None
    if recipe_args.overwrite_output:
        logger.warning("--overwrite_output: removing the previous run in %s", output_dir)
        shutil.rmtree(output_dir)
        return None
    checkpoints = list_checkpoints(output_dir)
    if settings is not None:
        check_same_run(checkpoints, settings)  # before any checkpoint is set aside
    for checkpoint in checkpoints:
        if not save_finished(checkpoint):
            # A kill during the save (trainer_state.json is written last): expected after SIGKILL, so
            # the same command moves it aside and resumes from the one before, without a flag.
            set_aside(checkpoint, INCOMPLETE_PREFIX, "its save never finished (no valid trainer_state.json)")
            continue
        problems = checkpoint_problems(checkpoint, require_state, allow_pickle)
        if not problems:
            logger.info("Resuming from %s (the last valid checkpoint in --output_dir).", checkpoint)
            return str(checkpoint)
        if not recipe_args.fallback_to_previous_checkpoint:
            raise CorruptCheckpointError(corrupt_checkpoint_message(checkpoint, problems, can_fall_back=True))
        set_aside(checkpoint, CORRUPT_PREFIX, "; ".join(problems))
    if checkpoints:
        previous = ", ".join(p.name for p in checkpoints)
        logger.warning("No valid checkpoint left in %s (set aside: %s): starting over.", output_dir, previous)
        return None
    finished = [name for name in FINISHED_RUN_MARKERS if (output_dir / name).exists()]
    if finished:
        raise ConfigError(
            f"--output_dir {output_dir} already holds a finished run ({', '.join(finished)}) and no "
            "checkpoint to resume. Pass --overwrite_output to replace it, or choose another --output_dir."
        )
    return None
