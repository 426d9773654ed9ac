"""`python run_cola.py search` (recipe/experiments/search.py) on the tiny BERT: trials, best config, resume."""

from __future__ import annotations

import csv
import sys

import optuna
import pytest
import yaml
from conftest import fast_args

import run_cola
from recipe.experiments.search import OBJECTIVE, STUDY_NAME
from recipe.training.arguments import parse_args

SEARCH_SPACE = [
    "--search_learning_rate",
    "1e-3",
    "4e-3",
    "--search_num_train_epochs",
    "1",
    "--search_batch_size",
    "16",
    "32",
    # Seeds other than the split's (42): best.yaml must still score on the trials' validation split.
    "--search_seed",
    "7",
    "8",
    # Parameter groups (recipe/training/optim.py) searched too: best.yaml must carry them as ModelArguments.
    "--search_classifier_lr_ratio",
    "1",
    "10",
    "--search_layerwise_lr_decay",
    "0.5",
    "1.0",
]


def search_argv(tiny_bert, cola_dir, out, n_trials: int) -> list[str]:
    return [
        "search",
        *fast_args(tiny_bert, cola_dir, out, "--max_train_samples", "96", "--logging_strategy", "no"),
        "--n_trials",
        str(n_trials),
        *SEARCH_SPACE,
    ]


def read_trials(out) -> list[dict[str, str]]:
    with open(out / "search" / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_search_writes_trials_a_best_config_that_reproduces_its_trial_and_resumes(
    tiny_bert, cola_dir, tmp_path
):
    out = tmp_path / "out"
    assert run_cola.cli(search_argv(tiny_bert, cola_dir, out, n_trials=2)) == 0

    trials = read_trials(out)
    assert [row["number"] for row in trials] == ["0", "1"]
    assert {row["state"] for row in trials} == {"COMPLETE"}
    for row in trials:
        assert 1e-3 <= float(row["learning_rate"]) <= 4e-3
        assert row["num_train_epochs"] == "1" and row["per_device_train_batch_size"] in ("16", "32")
        assert 0.0 <= float(row["warmup_steps"]) <= 0.2  # a ratio of the steps, not a count
        assert row[OBJECTIVE] and row["eval_loss"]  # scored; the best trial's values are reproduced below
    assert (out / "search" / "mcc_vs_lr.png").stat().st_size > 0
    assert not (out / "in_domain_dev_results.json").exists()  # the search never evaluates a test split

    # best.yaml: a ready config, opening with its command, holding the best trial's settings.
    best_yaml = out / "search" / "best.yaml"
    assert best_yaml.read_text().splitlines()[0] == f"# python run_cola.py --config {best_yaml}"
    best_row = max(trials, key=lambda row: float(row[OBJECTIVE]))  # first of equals, like Optuna
    values = yaml.safe_load(best_yaml.read_text())
    assert values["model_name_or_path"] == str(tiny_bert) and values["max_train_samples"] == 96
    assert not {"n_trials", "search_seed", "overwrite_output"} & set(values)
    assert values["validation_split_seed"] == 42 and values["seed"] == int(best_row["seed"]) in (7, 8)
    # The machine's choices are written out, so best.yaml runs the same job on another machine.
    assert values["bf16"] is False and values["optim"] == "adamw_torch_fused"
    assert (
        values["train_sampling_strategy"] == "group_by_length" and values["per_device_eval_batch_size"] == 32
    )
    model_args, data_args, training_args, _ = parse_args(
        ["--config", str(best_yaml), "--save_strategy", "no", "--write_report", "false"]
    )
    assert training_args.learning_rate == pytest.approx(float(best_row["learning_rate"]))
    assert training_args.warmup_steps == pytest.approx(float(best_row["warmup_steps"]))
    assert training_args.per_device_train_batch_size == int(best_row["per_device_train_batch_size"])
    assert training_args.output_dir == str(out / "best")
    assert model_args.layerwise_lr_decay == pytest.approx(float(best_row["layerwise_lr_decay"]))
    assert model_args.classifier_learning_rate == pytest.approx(
        float(best_row["classifier_lr_ratio"]) * float(best_row["learning_rate"])
    )

    # Trained through run_cola.main, it is the best trial again: same head, data order and dropout.
    results = run_cola.main(model_args, data_args, training_args)
    # Exact: the same run, and trials.csv holds each float's shortest round-trip repr.
    assert results["eval_loss"] == float(best_row["eval_loss"])
    assert results[OBJECTIVE] == float(best_row[OBJECTIVE])

    # A search stopped mid-trial leaves a RUNNING trial in the study; make one, then resume with more trials.
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / 'search' / 'study.db'}")
    study.ask()
    assert run_cola.cli(search_argv(tiny_bert, cola_dir, out, n_trials=3)) == 0
    resumed = read_trials(out)
    assert [row["state"] for row in resumed] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert resumed[:2] == trials  # earlier trials kept as they were
    assert (resumed[3]["learning_rate"], resumed[3]["warmup_steps"]) not in {
        (row["learning_rate"], row["warmup_steps"]) for row in trials
    }  # the resumed sampler draws new settings, not the first run's again


def test_search_without_optuna_says_how_to_install_it(tiny_bert, cola_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert run_cola.cli(search_argv(tiny_bert, cola_dir, tmp_path / "out", n_trials=1)) == 2
    assert "pip install -e '.[search]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--search_warmup_ratio", "0", "1.5"], "--search_warmup_ratio"),
        (["--search_learning_rate", "0", "1e-3"], "log scale"),
        (["--search_weight_decay", "0.1"], "--search_weight_decay"),
        (["--validation_split", "0"], "--validation_split"),
        (["--search_layerwise_lr_decay", "0.5", "1.2"], "--search_layerwise_lr_decay"),
    ],
)
def test_search_refuses_a_bad_space(tiny_bert, cola_dir, tmp_path, capsys, flags, message):
    assert run_cola.cli(search_argv(tiny_bert, cola_dir, tmp_path / "out", 1) + flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "search" / "study.db").exists()
