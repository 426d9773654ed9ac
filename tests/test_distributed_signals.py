"""Two real processes (gloo, CPU): gradients are synchronised, a signal to one rank stops both at the
same step with one checkpoint, the same command resumes to the uninterrupted run's weights, and a resume
with another number of processes is refused. Probes: tests/distributed_probe.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fast_args, write_cola_release
from safetensors.torch import load_file

import run_cola
from recipe.training.arguments import ConfigError, parse_args

REPO = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "distributed_probe.py"
# 72 rows, 8 held out: 64 training examples, a global batch of 16 (8 a rank): 4 steps an epoch, 8 in all.
TOTAL_STEPS = 8
SIGNAL_STEP = 3

pytestmark = pytest.mark.distributed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(script: Path, flags: list[str], **probes: str) -> subprocess.CompletedProcess:
    """`accelerate launch` two CPU processes over gloo running `script FLAGS`, probes in the environment."""
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"),
        *("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"),
        *("--main_process_port", str(free_port()), str(script), *flags),
        *("--use_cpu", "true", "--ddp_backend", "gloo"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **probes}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def flags(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        arg
        for arg in fast_args(model, data, out, "--global_train_batch_size", "16", "--learning_rate", "3e-3")
        if arg != "--use_cpu"  # launch() passes --use_cpu true with the gloo backend
    ] + [
        *("--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"),
        *("--do_eval", "false", "--write_report", "false", "--logging_steps", "50"),
        *extra,
    ]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    return write_cola_release(tmp_path_factory.mktemp("data"), n_train=72, n_dev=16, n_ood=None)


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert, small_data, tmp_path_factory) -> Path:
    """Two processes, start to end; each rank's weights after step 1 in dumps/."""
    root = tmp_path_factory.mktemp("uninterrupted")
    (root / "dumps").mkdir()
    run = launch(
        PROBE,
        flags(tiny_bert, small_data, root / "out"),
        PROBE_DUMP_STEP="1",
        PROBE_DUMP_DIR=str(root / "dumps"),
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return root


def test_after_one_step_both_ranks_hold_the_same_weights_and_without_sync_they_would_not(
    tiny_bert, small_data, uninterrupted, tmp_path
):
    synced = [torch.load(uninterrupted / "dumps" / f"rank{rank}.pt") for rank in (0, 1)]
    initial = load_file(tiny_bert / "model.safetensors")
    # Exact: both ranks apply the same all-reduced gradient to the same initial weights.
    assert same_weights(synced[0], synced[1])
    assert not torch.equal(synced[0]["classifier.weight"], initial["classifier.weight"])  # a step was taken

    (tmp_path / "dumps").mkdir()
    no_sync = launch(
        PROBE,
        flags(tiny_bert, small_data, tmp_path / "out", "--max_steps", "1"),
        PROBE_DUMP_STEP="1",
        PROBE_DUMP_DIR=str(tmp_path / "dumps"),
        PROBE_NO_SYNC="1",
    )
    assert no_sync.returncode == 0, no_sync.stderr[-4000:]
    unsynced = [torch.load(tmp_path / "dumps" / f"rank{rank}.pt") for rank in (0, 1)]
    # The control: each rank stepped on its own half of the batch, so the check above would catch it.
    assert not same_weights(unsynced[0], unsynced[1])
    assert not same_weights(unsynced[0], synced[0]) and not same_weights(unsynced[1], synced[0])


def test_a_signal_to_one_rank_stops_both_at_that_step_and_the_same_command_resumes_to_the_same_weights(
    tiny_bert, small_data, uninterrupted, tmp_path
):
    out = tmp_path / "out"
    run_flags = flags(tiny_bert, small_data, out)
    stopped = launch(PROBE, run_flags, PROBE_SIGNAL_RANK="1", PROBE_SIGNAL_STEP=str(SIGNAL_STEP))
    assert stopped.returncode != 0
    log = stopped.stderr
    # Rank 1 got SIGTERM; rank 0 learned it in the all-reduce and stopped at the same step.
    assert "Process 0: another process received SIGTERM" in log, log[-4000:]
    assert log.count(f"Training stopped on SIGTERM; saved {out / f'checkpoint-{SIGNAL_STEP}'}") == 2, log[
        -4000:
    ]
    assert sorted(path.name for path in out.glob("checkpoint-*")) == [f"checkpoint-{SIGNAL_STEP}"]
    state = json.loads((out / f"checkpoint-{SIGNAL_STEP}" / "trainer_state.json").read_text())
    assert state["global_step"] == SIGNAL_STEP
    assert not (out / "model.safetensors").exists()
    leftover = tmp_path / "leftover"
    shutil.copytree(out, leftover)

    (tmp_path / "first").mkdir()
    # The same command, with only the probe that records each rank's first step.
    resumed = launch(PROBE, run_flags, PROBE_FIRST_STEP_DIR=str(tmp_path / "first"))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    # Resumed, not restarted: both ranks' first step followed the checkpoint (a fresh start takes step 1).
    first_steps = [(tmp_path / "first" / f"rank{rank}.first_step").read_text() for rank in (0, 1)]
    assert first_steps == [str(SIGNAL_STEP + 1)] * 2
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == TOTAL_STEPS
    # Bit for bit: the resumed run restores each rank's RNG, the optimizer and the data position.
    assert same_weights(
        load_file(out / "model.safetensors"), load_file(uninterrupted / "out" / "model.safetensors")
    )

    # One process with the same global batch: another data order per step, so refused, naming why.
    with pytest.raises(ConfigError) as refused:
        run_cola.main(*parse_args([*flags(tiny_bert, small_data, leftover), "--use_cpu"]))
    message = str(refused.value)
    assert "world_size: 2 -> 1" in message and "per_device_train_batch_size: 8 -> 16" in message
