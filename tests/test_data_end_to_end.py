"""`main()` on the GLUE layout: each dev set reported separately, and --do_predict writes CoLA.tsv."""

from __future__ import annotations

import json

import pytest
from cola_layouts import write_glue_folder
from conftest import fast_args, write_cola_release

import run_cola
from recipe.arguments import parse_args


def test_glue_layout_reports_each_dev_set_and_writes_the_submission(tiny_bert, tmp_path):
    release = write_cola_release(tmp_path / "cola_public", n_train=64, n_dev=30, n_ood=20, seed=1)
    glue = write_glue_folder(release, tmp_path / "glue_data" / "CoLA", n_test=25)
    out = tmp_path / "out"
    flags = [
        "--validation_strategy",
        "dev",
        "--do_predict",
        "--num_train_epochs",
        "1",
        "--save_strategy",
        "no",
    ]
    results = run_cola.main(*parse_args(fast_args(tiny_bert, glue, out, *flags)))

    all_results = json.loads((out / "all_results.json").read_text())
    for split, samples in (("eval", 30), ("in_domain_dev", 30), ("out_of_domain_dev", 20), ("dev", 50)):
        assert all_results[f"{split}_samples"] == samples
        for key in ("matthews_correlation", "accuracy", "loss"):
            assert all_results[f"{split}_{key}"] == results[f"{split}_{key}"]
    # The union is the two parts together: its accuracy and loss are their size-weighted means.
    for key in ("accuracy", "loss"):
        union = (30 * results[f"in_domain_dev_{key}"] + 20 * results[f"out_of_domain_dev_{key}"]) / 50
        assert results[f"dev_{key}"] == pytest.approx(union, rel=1e-5)
    assert results["eval_loss"] == results["in_domain_dev_loss"]  # validation is the in-domain dev

    lines = (out / "CoLA.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 26
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(index) for index, _ in rows] == list(range(25))
    assert {prediction for _, prediction in rows} <= {"0", "1"}


def test_train_on_everything_without_validation(tiny_bert, tmp_path, capsys):
    cola_dir = write_cola_release(tmp_path / "cola_public", n_train=40, n_dev=10, n_ood=None)
    out = tmp_path / "out"
    flags = ["--validation_strategy", "none", "--num_train_epochs", "1", "--save_strategy", "no"]
    assert run_cola.cli([*fast_args(tiny_bert, cola_dir, out, *flags)]) == 2
    assert "--eval_strategy no" in capsys.readouterr().err
    results = run_cola.main(*parse_args(fast_args(tiny_bert, cola_dir, out, *flags, "--eval_strategy", "no")))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == -(-40 // 16)  # all 40 training rows, none held out
    assert "eval_loss" not in results and "in_domain_dev_matthews_correlation" in results
