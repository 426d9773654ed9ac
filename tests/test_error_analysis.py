"""After evaluation: per-sentence predictions, the grammar report card of a real `main()` run, the
"learned nothing" warning, and annotation errors caught before training."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import fast_args, write_cola_release, write_tsv
from sklearn.metrics import matthews_corrcoef
from test_reporting import assert_real_png
from transformers import TrainingArguments
from transformers.trainer_utils import PredictionOutput

import run_cola
from recipe.reports.analysis import load_annotations_for_run, write_error_analysis
from recipe.reports.predictions import read_predictions_tsv, tsv_text
from recipe.training import splits
from recipe.training.arguments import ConfigError, DataArguments, parse_args
from recipe.training.data import read_cola_tsv
from recipe.training.evaluation import SplitResult, split_result

MAJOR = ("Simple", "Binding", "Question")
MINOR = ("Copula", "Passive")
QUOTED = 'Susan whispered "shut up" to the dog.'


def features_of(index: int, count: int) -> list[int]:
    """A fixed 0/1 pattern per sentence, so the test knows which sentences carry which feature."""
    return [(index >> bit) & 1 for bit in range(count)]


def write_annotation_file(path: Path, features: tuple[str, ...], rows: list[tuple[int, str]]) -> None:
    """Official-format annotations with Windows line ends (the reader must take them)."""
    lines = ["\t".join(["Source", "Domain", "Acceptability", "Sentence", *features])]
    for index, (label, sentence) in enumerate(rows):
        lines.append(
            "\t".join(["gj04", "In", str(label), sentence, *map(str, features_of(index, len(features)))])
        )
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


@pytest.fixture
def annotated_release(tmp_path) -> tuple[Path, Path, list[tuple[int, str]]]:
    """A CoLA release with a quoted dev sentence, and annotations of its dev sets: one row matches no
    sentence, one row's label disagrees with the data."""
    data = write_cola_release(tmp_path / "cola", n_train=60, n_dev=30, n_ood=20)
    dev_path = data / "raw" / "in_domain_dev.tsv"
    dev = [line.split("\t") for line in dev_path.read_text(encoding="utf-8").splitlines()]
    dev[0] = ["gj04", "1", "", QUOTED]
    write_tsv(dev_path, dev)
    ood = [line.split("\t") for line in (data / "raw" / "out_of_domain_dev.tsv").read_text().splitlines()]
    rows = [(int(label), sentence) for _, label, _, sentence in dev + ood]
    rows[3] = (1 - rows[3][0], rows[3][1])  # the annotation disagrees with the dataset's label
    rows.append((1, "A sentence in no split."))
    folder = tmp_path / "annotations"
    folder.mkdir()
    write_annotation_file(folder / "CoLA_grammatical_annotations_major_features.tsv", MAJOR, rows)
    write_annotation_file(folder / "CoLA_grammatical_annotations_minor_features.tsv", MINOR, rows)
    return data, folder, rows


def test_main_writes_predictions_and_a_report_card_counting_matched_sentences(
    tiny_bert, annotated_release, tmp_path
):
    data, annotations, rows = annotated_release
    out = tmp_path / "out"
    flags = ["--num_train_epochs", "1", "--save_strategy", "no", "--annotations", str(annotations)]
    run_cola.main(*parse_args(fast_args(tiny_bert, data, out, *flags)))

    splits = {"in_domain_dev": read_cola_tsv(data / "raw" / "in_domain_dev.tsv")}
    splits["out_of_domain_dev"] = read_cola_tsv(data / "raw" / "out_of_domain_dev.tsv")
    splits["dev"] = datasets.concatenate_datasets(list(splits.values()))
    annotated = {sentence: index for index, (_, sentence) in enumerate(rows)}
    predictions = {}
    for split, dataset in splits.items():
        found = read_predictions_tsv(out / f"{split}_predictions.tsv")
        assert found.sentences == dataset["sentence"] and found.labels.tolist() == dataset["label"]
        assert found.sources == dataset["source"]
        np.testing.assert_array_equal(found.predictions, (found.p_acceptable > 0.5).astype(int))
        predictions[split] = found
    assert predictions["in_domain_dev"].sentences[0] == QUOTED  # written unquoted, read back whole
    assert (out / "validation_predictions.tsv").is_file()

    with (out / "phenomena.csv").open(encoding="utf-8") as handle:
        card = {(row["split"], row["kind"], row["feature"]): row for row in csv.DictReader(handle)}
    assert len(card) == 3 * (len(MAJOR) + len(MINOR))
    for split, found in predictions.items():
        for kind, names in (("major", MAJOR), ("minor", MINOR)):
            for bit, feature in enumerate(names):
                carriers = [
                    i
                    for i, sentence in enumerate(found.sentences)
                    if sentence in annotated and features_of(annotated[sentence], len(names))[bit]
                ]
                row = card[(split, kind, feature)]
                assert int(row["n"]) == len(carriers), (split, feature)
                # Scored against the dataset's labels (the one disagreeing row included).
                expected = matthews_corrcoef(found.labels[carriers], found.predictions[carriers])
                assert float(row["mcc"]) == pytest.approx(expected, abs=1e-12)
                assert float(row["mcc_low"]) <= float(row["mcc_high"])

    with (out / "phenomena_issues.tsv").open(encoding="utf-8") as handle:
        issues = [
            (row["kind"], row["issue"], row["sentence"]) for row in csv.DictReader(handle, delimiter="\t")
        ]
    for kind in ("major", "minor"):
        assert (kind, "label differs", rows[3][1]) in issues
        assert (kind, "unmatched", "A sentence in no split.") in issues
    assert len(issues) == 4
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "## Grammar report card" in readme and "### in_domain_dev" in readme
    assert (
        "### Most confident errors: in_domain_dev" in readme
        and "major: 1 label differs, 1 unmatched" in readme
    )
    assert (
        "Binding" in (out / "phenomena.md").read_text()
        and "Passive" not in (out / "phenomena.md").read_text()
    )
    assert_real_png(out / "phenomena.png")


def test_a_bad_annotation_file_stops_the_run_before_training(tiny_bert, annotated_release, tmp_path, capsys):
    data, annotations, _ = annotated_release
    major = annotations / "CoLA_grammatical_annotations_major_features.tsv"
    lines = major.read_bytes().decode("utf-8").split("\r\n")
    lines[5] = lines[5][:-1] + "x"  # the last feature of line 6
    major.write_text("\r\n".join(lines), encoding="utf-8")
    out = tmp_path / "out"
    assert run_cola.cli(fast_args(tiny_bert, data, out, "--annotations", str(annotations))) == 2
    error = capsys.readouterr().err
    assert (
        "CoLA_grammatical_annotations_major_features.tsv, line 6: feature 'Question' must be 0 or 1" in error
    )
    assert not (out / "model.safetensors").exists() and not (out / "all_results.json").exists()

    no_eval = ["--annotations", str(tmp_path / "missing"), "--do_eval", "false", "--eval_strategy", "no"]
    assert (
        run_cola.cli(
            fast_args(tiny_bert, data, tmp_path / "o2", *no_eval, "--load_best_model_at_end", "false")
        )
        == 2
    )
    assert "this run evaluates none (--do_eval is off)" in capsys.readouterr().err


def constant_output(n: int, constant: bool, split: splits.Split) -> SplitResult:
    """`split`'s result for `n` sentences: all 'acceptable', or alternating when not `constant`."""
    acceptable = np.ones(n, dtype=bool) if constant else np.arange(n) % 2 == 0
    logits = np.where(acceptable[:, None], [[-1.0, 2.0]], [[2.0, -1.0]]).astype(np.float32)
    return split_result(
        split, PredictionOutput(predictions=logits, label_ids=np.array([1, 0] * (n // 2)), metrics={})
    )


def four_sentences() -> datasets.DatasetDict:
    split = datasets.Dataset.from_dict(
        {"source": ["s"] * 4, "label": [1, 0, 1, 0], "sentence": ["A b.", "C d.", "E f.", "G h."]}
    )
    return datasets.DatasetDict({"validation": split, "in_domain_dev": split})


@pytest.mark.parametrize("constant", [True, False])
def test_a_model_predicting_one_class_is_called_out(tmp_path, caplog, constant):
    raw = four_sentences()
    outputs = {
        "validation": constant_output(4, constant, splits.VALIDATION),
        "in_domain_dev": constant_output(4, False, splits.IN_DOMAIN_DEV),
    }
    training_args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with caplog.at_level(logging.WARNING, logger="recipe.reports.analysis"):
        write_error_analysis(raw, outputs, None, DataArguments(), training_args)
    section = (tmp_path / "error_analysis.md").read_text(encoding="utf-8")
    warned = "'acceptable' for all 4 validation sentences (MCC 0)" in caplog.text
    assert warned == constant
    assert ("this run learned nothing" in section) == constant
    if constant:
        assert "--learning_rate" in section and "--seed" in section
    assert not (tmp_path / "phenomena.csv").exists()  # no annotations, no card


def test_a_tab_or_line_break_inside_a_field_is_refused_not_written():
    assert tsv_text(("a", "b"), [("x", 'say "hi"')]) == 'a\tb\nx\tsay "hi"\n'  # quotes stay as they are
    for bad in ("one\ttwo", "one\ntwo", "one\rtwo"):
        with pytest.raises(ValueError, match="row 1, b: .* holds a tab or line break"):
            tsv_text(("a", "b"), [("x", bad)])


def test_without_predictions_in_dataset_order_nothing_per_sentence_is_written(tmp_path, caplog):
    # The stock Trainer's length-grouped evaluation (transformers 5) does not restore the dataset's order.
    data_args = DataArguments(order_eval_by_length=False)
    training_args = TrainingArguments(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        do_eval=True,
        train_sampling_strategy="group_by_length",
    )
    outputs = {
        "validation": constant_output(4, True, splits.VALIDATION),
        "in_domain_dev": constant_output(4, False, splits.IN_DOMAIN_DEV),
    }
    with caplog.at_level(logging.WARNING, logger="recipe.reports.analysis"):
        write_error_analysis(four_sentences(), outputs, None, data_args, training_args)
    assert not list(tmp_path.glob("*_predictions.tsv"))
    section = (tmp_path / "error_analysis.md").read_text(encoding="utf-8")
    assert "Per-sentence predictions are not written" in section and "--order_eval_by_length" in section
    assert "this run learned nothing" in section  # a constant answer is one in any order
    data_args.annotations = str(tmp_path)
    with pytest.raises(ConfigError, match="--annotations scores each sentence's prediction"):
        load_annotations_for_run(data_args, four_sentences(), training_args)


def test_several_processes_never_claim_dataset_order():
    """Each rank evaluates its own shard with the stock sampler: rows are not paired back (2 processes)."""
    from types import SimpleNamespace

    from recipe.reports.analysis import predictions_in_dataset_order

    one = SimpleNamespace(world_size=1, train_sampling_strategy="group_by_length")
    two = SimpleNamespace(world_size=2, train_sampling_strategy="sequential")
    assert predictions_in_dataset_order(DataArguments(), one) is True
    assert predictions_in_dataset_order(DataArguments(), two) is False
