"""Keep the global batch size fixed when the number of processes changes, and record the launch.

`accelerate launch` (or torchrun) decides how many processes run; the Trainer sees it as
`TrainingArguments.world_size`. The Trainer's effective batch is
`per_device_train_batch_size * devices * gradient_accumulation_steps`, so the same config launched on
1, 2 or 8 GPUs would otherwise train with 8 different batch sizes. With `--global_train_batch_size`
set, the per-device batch and the accumulation are derived from the number of devices instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from accelerate import PartialState
from transformers import TrainingArguments

from recipe.training.arguments import ConfigError, RecipeArguments

logger = logging.getLogger(__name__)


def count_devices(training_args: TrainingArguments) -> int:
    """Devices that each take a per-device batch: processes times GPUs per process.

    Under DDP/FSDP/DeepSpeed every process drives one device (n_gpu == 1); a single process that sees
    several GPUs uses DataParallel and splits its batch over n_gpu of them; on the CPU n_gpu is 0.
    """
    return training_args.world_size * max(1, training_args.n_gpu)


def split_global_batch(global_batch: int, devices: int, max_per_device: int) -> tuple[int, int]:
    """Split a global batch into (per-device batch, accumulation steps).

    The per-device batch is the largest divisor of the per-device share that fits in
    `max_per_device` (the config's per_device_train_batch_size, i.e. what fits in memory), so
    accumulation is used only when it must be.

    Raises:
        ConfigError: the global batch is not a multiple of the number of devices.
    """
    if global_batch < 1:
        raise ConfigError(f"--global_train_batch_size must be positive; got {global_batch}.")
    if global_batch % devices:
        raise ConfigError(
            f"--global_train_batch_size {global_batch} cannot be split evenly over {devices} devices "
            f"({global_batch} / {devices} is not a whole number). Choose a multiple of {devices}, "
            "or launch a number of processes that divides it."
        )
    share = global_batch // devices
    accumulation = next(
        steps for steps in range(1, share + 1) if share % steps == 0 and share // steps <= max_per_device
    )
    return share // accumulation, accumulation


def apply_global_batch_size(training_args: TrainingArguments, recipe_args: RecipeArguments) -> None:
    """Derive per_device_train_batch_size and gradient_accumulation_steps from --global_train_batch_size.

    Does nothing when it is unset (the per-device batch is used as given). Afterwards
    per_device_train_batch_size * devices * gradient_accumulation_steps == global_train_batch_size.
    """
    if recipe_args.global_train_batch_size is None:
        return
    devices = count_devices(training_args)
    per_device, accumulation = split_global_batch(
        recipe_args.global_train_batch_size, devices, training_args.per_device_train_batch_size
    )
    logger.info(
        "Global train batch %d over %d device(s): per_device_train_batch_size %d, "
        "gradient_accumulation_steps %d.",
        recipe_args.global_train_batch_size,
        devices,
        per_device,
        accumulation,
    )
    training_args.per_device_train_batch_size = per_device
    training_args.gradient_accumulation_steps = accumulation
    recipe_args.setting_sources.update(
        per_device_train_batch_size="derived", gradient_accumulation_steps="derived"
    )


def launch_summary(training_args: TrainingArguments) -> dict[str, int]:
    """How the run was launched, for all_results.json: processes and the batch the optimizer saw."""
    devices = count_devices(training_args)
    return {
        "world_size": training_args.world_size,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "global_train_batch_size": training_args.per_device_train_batch_size
        * devices
        * training_args.gradient_accumulation_steps,
    }


@contextlib.contextmanager
def main_process_first(desc: str) -> Iterator[None]:
    """Run the block on each machine's main process first; the other processes wait, then run it too
    (and find what it wrote: the download, the extracted files, the `datasets` cache).

    `TrainingArguments.main_process_first` for code without the TrainingArguments at hand. Written here
    because accelerate's `PartialState.main_process_first` does not release the waiting processes when
    the block raises on the main one (they would hang until the timeout); this one does, and each of
    them then meets the same error.
    """
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        yield
        return
    is_main = PartialState().is_local_main_process
    try:
        if not is_main:
            logger.debug("Waiting for the main process: %s", desc)
            torch.distributed.barrier()
        yield
    finally:
        if is_main:
            torch.distributed.barrier()
