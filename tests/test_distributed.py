"""Two real processes on the CPU (gloo), launched the way users launch: `accelerate launch --multi_gpu`.

`accelerate launch --cpu --num_processes 2` starts ONE process on this machine (world size 1), so the
test uses `--multi_gpu` with the Trainer's `--use_cpu true --ddp_backend gloo` and asserts on the world
size the run itself recorded in all_results.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cola_rows, write_cola_release
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_cola
from recipe.training.arguments import parse_args

REPO = Path(__file__).resolve().parent.parent
# Odd sizes: two processes get unequal shards, and the sampler pads the shorter one with a duplicate
# that gather_for_metrics must drop for each example to count once.
N_TRAIN, N_DEV, N_OOD = 601, 201, 51
N_VALIDATION = 61  # 10% of 601, rounded up by train_test_split

pytestmark = pytest.mark.distributed


def free_port() -> int:
    """A TCP port nobody listens on now, so parallel test runs don't share a rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(*args: str) -> dict:
    """Run run_cola.py under `accelerate launch` with 2 CPU processes; return its all_results.json."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(REPO / "run_cola.py"),
        *args,
        "--use_cpu",
        "true",
        "--ddp_backend",
        "gloo",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    output_dir = Path(args[args.index("--output_dir") + 1])
    return json.loads((output_dir / "all_results.json").read_text())


def run_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        str(model),
        "--data_dir",
        str(data),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "4",
        "--learning_rate",
        "3e-3",
        "--global_train_batch_size",
        "16",
        "--save_strategy",
        "no",
        "--eval_strategy",
        "no",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "50",
        *extra,
    ]


@pytest.fixture(scope="module")
def rule_data(tmp_path_factory) -> Path:
    return write_cola_release(tmp_path_factory.mktemp("rule"), N_TRAIN, N_DEV, N_OOD, seed=3)


@pytest.fixture(scope="module")
def guessing_model(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT with its classifier stretched and centred so it splits generated sentences about
    half and half: accuracy strictly between 0 and 1, so a duplicated or missing example shows."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    sentences = [row[3] for row in cola_rows(300, seed=9)]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        model.classifier.weight.mul_(1000)
        logits = model(**batch).logits
        model.classifier.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    folder = tmp_path_factory.mktemp("guessing")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def assert_each_example_counted_once(results: dict) -> None:
    """The split sizes are right, and accuracy is a whole number of correct examples out of exactly
    that many: a padding duplicate left in would make it k / (n + 1), which is not (0 < k <= n)."""
    for split, size in (("eval", N_VALIDATION), ("in_domain_dev", N_DEV), ("out_of_domain_dev", N_OOD)):
        assert results[f"{split}_samples"] == size
        accuracy = results[f"{split}_accuracy"]
        assert 0 < accuracy < 1, f"{split}: accuracy {accuracy} cannot reveal a duplicate; use another model"
        correct = accuracy * size
        assert abs(correct - round(correct)) < 1e-6, f"{split}: accuracy {accuracy} is not k/{size}"


def test_two_processes_learn_as_well_as_one_with_the_same_global_batch(tiny_bert, rule_data, tmp_path):
    two = launch_two_processes(*run_args(tiny_bert, rule_data, tmp_path / "two"))
    one = run_cola.main(*parse_args([*run_args(tiny_bert, rule_data, tmp_path / "one"), "--use_cpu"]))

    assert two["world_size"] == 2 and one["world_size"] == 1
    # The same optimizer batch: 2 x 8 against 1 x 16.
    assert (two["per_device_train_batch_size"], one["per_device_train_batch_size"]) == (8, 16)
    assert two["global_train_batch_size"] == one["global_train_batch_size"] == 16
    for split, size in (("eval", N_VALIDATION), ("in_domain_dev", N_DEV), ("out_of_domain_dev", N_OOD)):
        assert two[f"{split}_samples"] == one[f"{split}_samples"] == size
    for split in ("in_domain_dev", "out_of_domain_dev"):
        mcc_two, mcc_one = two[f"{split}_matthews_correlation"], one[f"{split}_matthews_correlation"]
        assert mcc_two >= 0.8 and mcc_one >= 0.8, (two, one)
        # 0.1: the two launches draw other dropout masks and sum gradients in another order; both learned.
        assert abs(mcc_two - mcc_one) <= 0.1, (two, one)


def test_one_saved_model_scores_the_same_on_one_or_two_processes(guessing_model, rule_data, tmp_path):
    eval_only = ("--do_train", "false")
    two = launch_two_processes(*run_args(guessing_model, rule_data, tmp_path / "two", *eval_only))
    one = run_cola.main(
        *parse_args([*run_args(guessing_model, rule_data, tmp_path / "one", *eval_only), "--use_cpu"])
    )

    assert two["world_size"] == 2 and one["world_size"] == 1
    assert_each_example_counted_once(two)
    assert_each_example_counted_once(one)
    for split in ("eval", "in_domain_dev", "out_of_domain_dev"):
        assert two[f"{split}_matthews_correlation"] == one[f"{split}_matthews_correlation"]
        assert two[f"{split}_accuracy"] == one[f"{split}_accuracy"]
        # The loss is not exact: the Trainer gathers one mean loss per batch (repeated batch-size
        # times), so the padding duplicate is inside one process's batch mean before gather_for_metrics
        # drops a copy of that mean. The bias is a fraction of a percent, not a factor.
        assert two[f"{split}_loss"] == pytest.approx(one[f"{split}_loss"], rel=5e-3)
