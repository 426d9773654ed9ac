"""Best model by validation MCC (tutorial defaults, switched off where a run can't keep checkpoints) and
early stopping."""

from __future__ import annotations

import json

import pytest
from conftest import fast_args, write_cola_release

import run_cola
from recipe.training.arguments import ConfigError, RecipeArguments, parse_args
from recipe.training.best_model import configure_best_model


def test_defaults_keep_the_best_mcc_checkpoint():
    training_args = parse_args([])[2]
    assert training_args.load_best_model_at_end
    assert training_args.metric_for_best_model == "matthews_correlation"
    assert training_args.greater_is_better


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--save_strategy", "no"], False),
        (["--eval_strategy", "no"], False),
        (["--save_strategy", "best"], True),
        (
            [
                "--eval_strategy",
                "steps",
                "--save_strategy",
                "steps",
                "--eval_steps",
                "5",
                "--save_steps",
                "10",
            ],
            True,
        ),
        (
            [
                "--eval_strategy",
                "steps",
                "--save_strategy",
                "steps",
                "--eval_steps",
                "5",
                "--save_steps",
                "7",
            ],
            False,
        ),
        (["--load_best_model_at_end", "false"], False),
    ],
)
def test_best_model_default_follows_the_save_and_eval_strategies(flags, expected):
    assert parse_args(flags)[2].load_best_model_at_end is expected


def test_an_explicit_request_that_cannot_work_still_gets_the_trainers_error():
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        parse_args(["--load_best_model_at_end", "true", "--save_strategy", "no"])


def test_no_validation_split_keeps_the_last_model_and_refuses_early_stopping():
    training_args = parse_args([])[2]
    assert configure_best_model(training_args, RecipeArguments(), has_validation=False) == []
    assert not training_args.load_best_model_at_end
    with pytest.raises(ConfigError, match="--early_stopping_patience"):
        configure_best_model(training_args, RecipeArguments(early_stopping_patience=2), has_validation=False)


def test_early_stopping_stops_when_mcc_stops_improving(tiny_bert, tmp_path):
    data = write_cola_release(tmp_path / "cola", n_train=40, n_dev=10, n_ood=None)
    out = tmp_path / "out"
    # learning_rate 0: validation MCC never improves, so patience 1 stops after the second epoch.
    flags = ["--num_train_epochs", "5", "--learning_rate", "0", "--early_stopping_patience", "1"]
    run_cola.main(*parse_args(fast_args(tiny_bert, data, out, *flags, "--write_report", "false")))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["epoch"] == pytest.approx(2.0)
    evaluations = [entry for entry in state["log_history"] if "eval_matthews_correlation" in entry]
    assert len(evaluations) == 2  # trainer_state.json is saved after training, before the test evaluations
