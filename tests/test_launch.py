"""Launching on many devices: the global batch split, the mean loss under accumulation, and the
accelerate launch configs (read by accelerate's own loader; their documented commands parse)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser
from conftest import fast_args

import run_cola
from recipe.runtime.distributed import apply_global_batch_size, split_global_batch
from recipe.training.arguments import ConfigError, RecipeArguments, parse_args

REPO = Path(__file__).resolve().parent.parent
LAUNCH_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))
EXPECTED = {"single_gpu.yaml", "multi_gpu.yaml", "fsdp.yaml", "deepspeed_zero2.yaml"}


@pytest.mark.parametrize(
    ("global_batch", "devices", "max_per_device", "expected"),
    [
        (32, 1, 32, (32, 1)),
        (32, 2, 32, (16, 1)),
        (32, 8, 32, (4, 1)),
        (32, 1, 8, (8, 4)),  # the per-device batch is a cap: accumulate when the share does not fit
        (64, 2, 16, (16, 2)),
        (48, 1, 20, (16, 3)),  # the largest divisor of the share that fits
        (7, 1, 4, (1, 7)),
    ],
)
def test_split_global_batch(global_batch, devices, max_per_device, expected):
    per_device, accumulation = split_global_batch(global_batch, devices, max_per_device)
    assert (per_device, accumulation) == expected
    assert per_device * accumulation * devices == global_batch and per_device <= max_per_device


def test_indivisible_global_batch_is_refused():
    with pytest.raises(ConfigError, match=r"--global_train_batch_size 30 .* 4 devices.*multiple of 4"):
        split_global_batch(30, 4, 32)
    with pytest.raises(ConfigError, match="positive"):
        split_global_batch(0, 1, 32)


def test_apply_global_batch_size_sets_the_trainer_knobs():
    _, _, training_args, recipe_args = parse_args(
        ["--use_cpu", "--per_device_train_batch_size", "16", "--global_train_batch_size", "64"]
    )
    apply_global_batch_size(training_args, recipe_args)
    assert training_args.world_size == 1
    assert (training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps) == (16, 4)
    apply_global_batch_size(training_args, recipe_args)  # idempotent: a second call changes nothing
    assert (training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps) == (16, 4)

    _, _, unset, _ = parse_args(["--use_cpu", "--per_device_train_batch_size", "16"])
    apply_global_batch_size(unset, RecipeArguments())
    assert (unset.per_device_train_batch_size, unset.gradient_accumulation_steps) == (16, 1)


def test_accumulated_batch_has_the_same_loss_as_one_big_batch(tiny_bert, cola_dir, tmp_path):
    """Global batch 16 as 1 x 16 and as 8 x 2 accumulated: the first step's logged loss agrees. Without
    the model's `accepts_loss_kwargs = False` transformers 5 sums the micro-batch losses (twice as big)."""
    losses = []
    for name, extra in (("one", ()), ("accumulated", ("--per_device_train_batch_size", "8"))):
        out = tmp_path / name
        flags = fast_args(tiny_bert, cola_dir, out, "--global_train_batch_size", "16", *extra)
        results = run_cola.main(
            *parse_args(
                [
                    *flags,
                    "--max_steps",
                    "1",
                    "--logging_steps",
                    "1",
                    "--save_strategy",
                    "no",
                    "--do_eval",
                    "false",
                ]
            )
        )
        assert results["global_train_batch_size"] == 16
        state = json.loads((out / "trainer_state.json").read_text())
        losses.append(next(entry["loss"] for entry in state["log_history"] if "loss" in entry))
    assert losses[1] == pytest.approx(losses[0], rel=0.15), losses  # dropout masks differ, not the scale


def test_the_four_launch_configs_exist():
    assert {config.name for config in LAUNCH_CONFIGS} == EXPECTED


def launch_commands(config: Path) -> list[list[str]]:
    """The `accelerate launch ...` commands written in a config's opening comment."""
    commands = []
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            break
        if "accelerate launch" in line:
            commands.append(shlex.split(line[line.index("accelerate launch") :]))
    return commands


@pytest.mark.parametrize("config", LAUNCH_CONFIGS, ids=[c.name for c in LAUNCH_CONFIGS])
def test_launch_config_loads_and_its_commands_parse(config):
    loaded = load_config_from_file(str(config))  # accelerate's own loader: unknown keys raise
    launch_parser = launch_command_parser()
    launch_flags = {action.dest for action in launch_parser._actions}
    raw = yaml.safe_load(config.read_text())
    for section in ("fsdp_config", "deepspeed_config"):
        for key in raw.get(section) or {}:
            assert key in launch_flags, f"{config.name}: {section}.{key} is not an accelerate launch option"
    assert loaded.num_processes >= 1

    commands = launch_commands(config)
    assert commands and commands[0][:4] == [
        "accelerate",
        "launch",
        "--config_file",
        f"configs/accelerate/{config.name}",
    ], commands
    for command in commands:
        script = command.index("run_cola.py")
        launch_parser.parse_args(command[2 : script + 1])  # argparse exits on an unknown launch flag
        script_flags = command[script + 1 :]
        run_config = script_flags[script_flags.index("--config") + 1]
        assert (REPO / run_config).is_file(), f"{config.name}: {run_config} does not exist"
        # run_cola.py's parser takes the flags; --bf16 would demand a GPU here, so it is checked by name.
        if "--bf16" in script_flags:
            del script_flags[script_flags.index("--bf16") : script_flags.index("--bf16") + 2]
        script_flags[script_flags.index("--config") + 1] = str(REPO / run_config)
        parse_args([*script_flags, "--use_cpu"])
