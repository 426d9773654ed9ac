"""The machine's defaults (recipe/runtime/hardware.py) on simulated machines, through the real TrainingArguments.

Each test says which machine it simulates (tests/conftest.py: PLAIN_CPU, BF16_CPU, BF16_CARD, FP16_CARD);
the rest of the suite sees PLAIN_CPU, whatever CPU or GPU the host has.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from conftest import BF16_CARD, BF16_CPU, FP16_CARD, PLAIN_CPU, fast_args
from transformers import AutoModelForSequenceClassification

import run_cola
from recipe.runtime import hardware
from recipe.runtime.env_report import env_report
from recipe.training.arguments import ConfigError, parse_args
from recipe.training.settings import arguments_as_dicts, reproduce_command


@pytest.fixture
def cuda_settings_accepted(monkeypatch):
    """Let TrainingArguments accept a simulated card's bf16/TF32 settings on a host without one."""
    monkeypatch.setattr("transformers.training_args.is_torch_bf16_gpu_available", lambda: True)
    monkeypatch.setattr("transformers.training_args.is_torch_tf32_available", lambda: True)
    monkeypatch.setattr("transformers.training_args.enable_tf32", lambda value: None)


def test_cpuinfo_flags_and_model_are_read(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    flags, model = hardware.read_cpuinfo(cpuinfo)
    assert flags == {"fpu", "avx2", "avx512_bf16", "amx_bf16"} and model == "AMD EPYC 9R14"
    assert hardware.read_cpuinfo(tmp_path / "absent")[0] == frozenset()


def test_cpu_flags_can_be_pinned_from_the_environment(monkeypatch):
    monkeypatch.undo()  # the real detect_hardware, not the suite's pinned one
    monkeypatch.setenv("COLA_CPU_FLAGS", "avx2 amx_bf16")
    detected = hardware.detect_hardware(use_cpu=True)
    assert detected.cpu_flags == {"avx2", "amx_bf16"} and detected.cpu_native_bf16
    assert "flags from $COLA_CPU_FLAGS" in detected.describe()
    monkeypatch.setenv("COLA_CPU_FLAGS", "avx2")
    assert hardware.machine_defaults(hardware.detect_hardware(use_cpu=True))["bf16"] is False


def test_machine_defaults_per_kind_of_machine():
    plain = hardware.machine_defaults(PLAIN_CPU)
    assert plain["bf16"] is False and plain["use_cpu"] is True and "fp16" not in plain
    assert plain["per_device_eval_batch_size"] == 32 and plain["dataloader_num_workers"] == 0
    assert plain["train_sampling_strategy"] == "group_by_length" and plain["optim"] == "adamw_torch_fused"
    for flag in ("avx512_bf16", "amx_bf16"):  # either native bf16 flag turns bf16 on
        cpu = hardware.Hardware(device_type="cpu", cpu_count=2, cpu_flags=frozenset({"avx2", flag}))
        assert hardware.machine_defaults(cpu)["bf16"] is True
    card = hardware.machine_defaults(BF16_CARD)
    assert card["bf16"] is True and card["tf32"] is True and "fp16" not in card and "use_cpu" not in card
    assert card["per_device_eval_batch_size"] == 128 and card["dataloader_num_workers"] == 4
    old = hardware.machine_defaults(FP16_CARD)
    assert old["fp16"] is True and "bf16" not in old and "tf32" not in old
    assert hardware.without_explicit({"bf16": True, "tf32": True}, {"fp16"}) == {"tf32": True}


def test_plain_cpu_trains_in_fp32_and_records_where_each_setting_came_from(tiny_bert, cola_dir, tmp_path):
    _, data_args, training_args, recipe_args = parse_args(fast_args(tiny_bert, cola_dir, tmp_path))
    assert training_args.bf16 is False and training_args.fp16 is False
    assert data_args.pad_to_max_length is False and data_args.order_eval_by_length is True
    sources = recipe_args.setting_sources
    assert sources["bf16"] == "machine" and sources["optim"] == "machine"
    assert sources["use_cpu"] == "flag" and sources["learning_rate"] == "flag"  # fast_args passes both
    assert sources["adam_epsilon"] == "recipe" and sources["adam_beta1"] == "default"
    assert recipe_args.machine == PLAIN_CPU.describe()


def test_native_bf16_cpu_gets_bf16_with_use_cpu(pinned_hardware, tiny_bert, cola_dir, tmp_path):
    pinned_hardware(BF16_CPU)
    # No --use_cpu here: on a CPU machine the recipe sets it, as transformers requires for bf16.
    flags = [a for a in fast_args(tiny_bert, cola_dir, tmp_path) if a != "--use_cpu"]
    _, _, training_args, recipe_args = parse_args(flags)
    assert training_args.bf16 is True and training_args.use_cpu is True
    assert recipe_args.setting_sources["use_cpu"] == "machine"
    # --bf16 false (flag or config) turns it off; the fp32 run then has nothing machine-chosen about it.
    _, _, training_args, recipe_args = parse_args([*flags, "--bf16", "false"])
    assert training_args.bf16 is False and recipe_args.setting_sources["bf16"] == "flag"
    config = tmp_path / "c.yaml"
    config.write_text("bf16: false\ntrain_sampling_strategy: sequential\noptim: adamw_torch\n")
    _, _, training_args, recipe_args = parse_args(["--config", str(config), *flags])
    assert training_args.bf16 is False and training_args.train_sampling_strategy == "sequential"
    assert training_args.optim == "adamw_torch" and recipe_args.setting_sources["optim"] == "config"


def test_cuda_cards_get_their_precision_through_training_arguments(
    pinned_hardware, cuda_settings_accepted, tiny_bert, cola_dir, tmp_path
):
    flags = [a for a in fast_args(tiny_bert, cola_dir, tmp_path) if a != "--use_cpu"]
    pinned_hardware(BF16_CARD)
    _, _, training_args, _ = parse_args(flags)
    assert training_args.bf16 is True and training_args.tf32 is True and training_args.fp16 is False
    assert training_args.use_cpu is False and training_args.dataloader_pin_memory is True
    # A user's --fp16 drops the card's default bf16 instead of meeting it.
    _, _, training_args, _ = parse_args([*flags, "--fp16"])
    assert training_args.fp16 is True and training_args.bf16 is False
    pinned_hardware(FP16_CARD)
    _, _, training_args, _ = parse_args(flags)
    assert training_args.fp16 is True and training_args.bf16 is False and training_args.tf32 is None


def test_a_refused_combination_is_one_line_naming_the_flags(tiny_bert, cola_dir, tmp_path, capsys):
    flags = fast_args(tiny_bert, cola_dir, tmp_path, "--bf16", "true", "--fp16", "true")
    with pytest.raises(ConfigError, match=r"Change --bf16, --fp16"):
        parse_args(flags)
    assert run_cola.cli(flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("run_cola.py: error: invalid combination of settings") and "\n" not in err


def run_dir_parameters(folder: Path) -> dict[str, torch.Tensor]:
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("machine", [PLAIN_CPU, BF16_CPU], ids=["avx2-only", "native-bf16"])
def test_main_trains_on_each_kind_of_cpu(pinned_hardware, machine, tiny_bert, cola_dir, tmp_path):
    """A few real steps through main() on each simulated CPU: bf16 autocast runs on any x86 CPU (slowly
    where emulated), so the native-bf16 machine's defaults really train here too."""
    pinned_hardware(machine)
    out = tmp_path / "run"
    flags = [a for a in fast_args(tiny_bert, cola_dir, out, "--max_steps", "6") if a != "--use_cpu"]
    results = run_cola.main(*parse_args(flags))
    # A loss, not NaN or infinity: near ln 2 = 0.69 for two balanced classes, far from 0 after 6 steps.
    assert 0.3 < results["train_loss"] < 1.5, results["train_loss"]
    before, after = run_dir_parameters(tiny_bert), run_dir_parameters(out)
    assert any(not torch.equal(before[name], after[name]) for name in before)  # it trained
    settings = json.loads((out / "run_args.json").read_text())["settings"]
    bf16 = machine is BF16_CPU
    assert settings["bf16"] == {"value": bf16, "source": "machine"}
    assert settings["use_cpu"] == {"value": True, "source": "machine"}
    card = (out / "README.md").read_text()
    assert machine.describe() in card and "| bf16 | " + str(bf16) + " | machine |" in card
    command = card.split("```bash\n")[1].split("\n")[0]
    assert f"--bf16 {'true' if bf16 else 'false'}" in command and "--use_cpu true" in command


def test_the_reproduce_command_runs_the_same_job_on_another_machine(
    pinned_hardware, tiny_bert, cola_dir, tmp_path
):
    pinned_hardware(BF16_CPU)
    flags = [a for a in fast_args(tiny_bert, cola_dir, tmp_path / "o") if a != "--use_cpu"]
    args = parse_args(flags)
    command = reproduce_command(*args)
    for machine in (PLAIN_CPU, BF16_CPU):  # replayed on an AVX2-only CPU, the job stays a bf16 CPU job
        pinned_hardware(machine)
        again = parse_args(shlex.split(command)[2:])
        assert arguments_as_dicts(*again) == arguments_as_dicts(*args)


def test_env_reports_machine_versions_and_defaults(pinned_hardware, capsys):
    pinned_hardware(BF16_CPU)
    assert run_cola.cli(["env"]) == 0
    out = capsys.readouterr().out
    assert "simulated AVX-512 BF16 CPU" in out and "avx512_bf16" in out
    assert f"- transformers: {__import__('transformers').__version__}" in out
    assert "- bf16: True" in out and "- use_cpu: True" in out
    pinned_hardware(BF16_CARD)
    assert "- tf32: True" in env_report()
    assert run_cola.cli(["env", "extra"]) == 2
