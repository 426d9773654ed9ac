"""One switch for the machine: predict, the versions record, the search, the reports and the GPU benchmark
ask the hardware layer (recipe/runtime/hardware.py), which the suite pins (tests/conftest.py); nothing asks the host.

Each test pins a simulated machine and checks that the code took that machine's path, and, where the host
itself could leak in, makes the host say the opposite (torch reports a GPU) to show it was not asked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import (
    BF16_CARD,
    BF16_CPU,
    CACHE_ROOT,
    PLAIN_CPU,
    fast_args,
    simulate_gpu_host,
    write_cola_release,
)
from transformers import TrainerState

import run_cola
from recipe.reports.card import CardInputs, model_card
from recipe.runtime import versions
from recipe.serving import predict
from recipe.training.arguments import parse_args
from recipe.training.settings import settings_differing_from_defaults

REPO = Path(__file__).resolve().parent.parent


class PipelineLoaded(Exception):
    """Raised by the stand-in pipeline loader once it has recorded the device it was given."""


@pytest.fixture
def predict_device(monkeypatch):
    """Runs `predict_cli` up to loading the pipeline and returns the device it chose."""

    def load(model_dir, device="cpu"):
        raise PipelineLoaded(device)

    monkeypatch.setattr(predict, "load_cola_pipeline", load)

    def chosen(*flags: str) -> str:
        with pytest.raises(PipelineLoaded) as loaded:
            predict.predict_cli(["--model_dir", "unused", *flags, "The cat sat."])
        return loaded.value.args[0]

    return chosen


@pytest.fixture
def host_has_a_gpu(monkeypatch, tmp_path):
    """To the recipe's own code the host is an A100 box with an AMX CPU (what an unpinned check would see
    there; conftest.simulate_gpu_host, as COLA_TEST_SIMULATED_HOST=cuda does for the whole suite)."""
    simulate_gpu_host(monkeypatch, tmp_path / "cpuinfo")


@pytest.fixture
def library_accepts_gpu_settings(monkeypatch):
    """TrainingArguments accepts bf16 and TF32 without a GPU, so a simulated card's settings can be parsed
    on a CPU build (nothing is trained with them); torch's TF32 switch is left alone."""
    import transformers.training_args as training_args_module

    monkeypatch.setattr(training_args_module, "is_torch_bf16_gpu_available", lambda: True)
    monkeypatch.setattr(training_args_module, "is_torch_tf32_available", lambda: True)
    monkeypatch.setattr(training_args_module, "enable_tf32", lambda enable: None)


def test_predict_uses_the_device_of_the_pinned_machine(predict_device, pinned_hardware):
    assert predict_device() == "cpu"
    pinned_hardware(BF16_CARD)
    assert predict_device() == "cuda"
    assert predict_device("--use_cpu") == "cpu"


def test_predict_does_not_ask_the_host(predict_device, host_has_a_gpu):
    assert predict_device() == "cpu"  # the pinned machine (PLAIN_CPU) has no GPU, whatever the host says


@pytest.mark.parametrize("machine", [BF16_CARD, BF16_CPU])
def test_versions_record_the_pinned_machine(machine, pinned_hardware, host_has_a_gpu):
    pinned_hardware(machine)
    assert versions.run_versions()["machine"] == machine.describe()
    assert versions.run_versions("recorded machine")["machine"] == "recorded machine"


def test_search_and_card_carry_a_simulated_cards_settings(
    pinned_hardware, library_accepts_gpu_settings, tmp_path
):
    pinned_hardware(BF16_CARD)
    args = parse_args(["--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")])
    training_args, recipe_args = args[2], args[3]
    assert recipe_args.machine == BF16_CARD.describe()
    # best.yaml's settings (recipe/training/settings.py): the card's choices, written out for another machine.
    best = settings_differing_from_defaults(*args)
    assert best["bf16"] is True and best["tf32"] is True and not best.get("use_cpu")
    assert best["per_device_eval_batch_size"] == 128 and best["dataloader_pin_memory"] is True
    # The model card names the machine and reproduces its choices.
    card = str(model_card(CardInputs(*args, results={}, shown=[], rows=[], state=TrainerState())))
    assert f"({BF16_CARD.describe()})" in card
    assert "--bf16 true" in card and "--tf32 true" in card
    assert training_args.bf16 and not training_args.use_cpu


def test_search_and_reports_take_a_simulated_bf16_cpu(pinned_hardware, host_has_a_gpu, tiny_bert, tmp_path):
    """A real search trial and a real run on the simulated AVX-512 BF16 CPU: both train in bf16 (the
    machine's choice), and the run's record and card name that machine, though the host claims a GPU."""
    pinned_hardware(BF16_CPU)
    data = write_cola_release(tmp_path / "cola", n_train=64, n_dev=16, n_ood=None)
    out = tmp_path / "search-out"
    flags = fast_args(tiny_bert, data, out, "--num_train_epochs", "1", "--logging_strategy", "no")
    flags.remove("--use_cpu")  # the machine decides
    assert run_cola.cli(["search", *flags, "--n_trials", "1", "--search_num_train_epochs", "1"]) == 0
    best = yaml.safe_load((out / "search" / "best.yaml").read_text())
    assert best["bf16"] is True and best["use_cpu"] is True

    run_out = tmp_path / "run"
    args = parse_args(["--config", str(out / "search" / "best.yaml"), "--output_dir", str(run_out)])
    run_cola.main(*args)
    run_args = json.loads((run_out / "run_args.json").read_text())
    assert run_args["machine"] == BF16_CPU.describe() == run_args["versions"]["machine"]
    assert run_args["settings"]["bf16"]["value"] is True
    assert BF16_CPU.describe() in (run_out / "README.md").read_text()


def test_subprocesses_and_caches_are_pinned():
    """What the runs tests start inherit: no GPU, a plain AVX2 CPU, and this session's empty caches."""
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    for variable in ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TORCH_HOME"):
        assert Path(os.environ[variable]).is_relative_to(CACHE_ROOT), variable
    code = (
        "import huggingface_hub.constants as c, datasets.config as d, torch.hub as h\n"
        "from recipe.runtime.hardware import detect_hardware\n"
        "m = detect_hardware()\n"
        "print(m.device_type, sorted(m.cpu_flags), c.HF_HUB_CACHE, d.HF_DATASETS_CACHE, h.get_dir(), sep='|')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True, timeout=120
    )
    device, flags, hub, datasets_cache, torch_hub = result.stdout.strip().splitlines()[-1].split("|")
    assert device == "cpu" and flags == str(sorted(PLAIN_CPU.cpu_flags))
    for path in (hub, datasets_cache, torch_hub):
        assert Path(path).is_relative_to(CACHE_ROOT), path


@pytest.mark.parametrize("path", ["trainer", "loop"])
def test_gpu_bench_smoke_runs_on_the_pinned_machine(path, tmp_path, host_has_a_gpu):
    """The host claims a GPU; the pinned machine is a CPU: the benchmark runs there, with its settings."""
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_bench

    out = tmp_path / "gpu.json"
    assert gpu_bench.main(["--smoke", "--epochs", "1", "--path", path, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu (smoke test)" and result["machine"] == PLAIN_CPU.describe()
    assert len(result["epoch_seconds"]) == 2 and result["peak_tflops"] is None
    if path == "trainer":  # the recipe's defaults for the pinned CPU
        assert result["settings"]["use_cpu"] == "True" and result["settings"]["bf16"] == "False"
    else:
        assert result["settings"]["bf16"] == "off" and result["settings"]["tf32"] == "False"


def test_gpu_bench_without_a_gpu_skips_whatever_the_host_says(capsys, host_has_a_gpu):
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_bench

    assert gpu_bench.main(["--epochs", "1"]) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().err
