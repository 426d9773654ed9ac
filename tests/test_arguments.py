"""Argument and config parsing: YAML sets defaults, flags override, unknown keys fail by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recipe.training.arguments import ConfigError, build_parser, known_keys, parse_args

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def test_bare_defaults_are_the_tutorial_settings():
    model_args, data_args, training_args, _ = parse_args(["--output_dir", "x"])
    assert model_args.model_name_or_path == "bert-base-uncased"
    assert data_args.max_seq_length == 64
    assert data_args.validation_split == pytest.approx(0.1)
    assert training_args.per_device_train_batch_size == 32
    assert training_args.learning_rate == pytest.approx(2e-5)
    assert training_args.adam_epsilon == pytest.approx(1e-8)
    assert training_args.weight_decay == 0.0
    assert training_args.lr_scheduler_type == "linear"
    assert training_args.warmup_steps == 0
    assert training_args.num_train_epochs == 4
    assert training_args.max_grad_norm == 1.0
    assert training_args.seed == 42
    assert training_args.eval_strategy == "epoch"


def test_config_sets_defaults_and_flags_override(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("learning_rate: 5.0e-5\nnum_train_epochs: 2\nmax_seq_length: 32\nseed: 7\n")
    _, data_args, training_args, _ = parse_args(
        ["--config", str(config), "--seed", "13", "--output_dir", "o"]
    )
    assert training_args.learning_rate == pytest.approx(5e-5)
    assert training_args.num_train_epochs == 2
    assert data_args.max_seq_length == 32
    assert training_args.seed == 13  # the flag wins over the file


def test_yaml_1_1_exponent_without_dot_is_parsed(tmp_path):
    # PyYAML reads `2e-5` as a string; argparse converts string defaults with the field's type.
    config = tmp_path / "exp.yaml"
    config.write_text("learning_rate: 2e-5\n")
    _, _, training_args, _ = parse_args(["--config", str(config), "--output_dir", "o"])
    assert training_args.learning_rate == pytest.approx(2e-5)


def test_unknown_key_in_config_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("learnin_rate: 1.0e-4\n")
    with pytest.raises(ConfigError, match=r"unknown key 'learnin_rate'.*learning_rate"):
        parse_args(["--config", str(config)])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        parse_args(["--config", str(tmp_path / "nope.yaml")])


def test_unknown_flag_is_an_error():
    with pytest.raises(ConfigError, match=r"unknown argument '--learnin_rate'.*--learning_rate"):
        parse_args(["--learnin_rate", "1e-4"])


def test_bad_data_value_is_named():
    with pytest.raises(ValueError, match="max_seq_length"):
        parse_args(["--max_seq_length", "1"])


def test_the_config_search_finds_the_nested_configs():
    """What the test below runs over: an empty or top-level-only glob would make it pass by running nothing."""
    found = {str(c.relative_to(REPO / "configs")) for c in CONFIGS}
    assert {"minilm-l6-cpu.yaml", "bert-base-uncased.yaml", "accelerate/multi_gpu.yaml"} <= found


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO)) for c in CONFIGS])
def test_every_config_loads(config):
    first_line = config.read_text().splitlines()[0]
    assert first_line.startswith("#"), f"{config} must open with a comment giving the command that runs it"
    if "accelerate" in config.parts:
        return  # accelerate launch configs are read by accelerate, not by run_cola.py
    values = yaml.safe_load(config.read_text()) or {}
    assert set(values) <= known_keys(build_parser())
    parse_args(["--config", str(config)])


def test_help_works():
    result = subprocess.run(
        [sys.executable, str(REPO / "run_cola.py"), "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--config", "--model_name_or_path", "--data_dir", "--max_seq_length", "--learning_rate"):
        assert flag in result.stdout
