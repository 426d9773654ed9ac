"""The grammar report card: annotation files in every accepted shape, bad ones, matching, MCC intervals."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef

from recipe.reports.annotations import match_annotations, read_annotations
from recipe.reports.phenomena import bootstrap_indices, mcc_interval, mcc_rows, score_phenomena
from recipe.training.data import DataError

FEATURES = ("Simple", "Binding", "Question")
QUOTED = 'Susan whispered "shut up" to the dog.'
ROWS = [  # (acceptability, sentence, features)
    (1, "The cat sat.", (1, 0, 0)),
    (0, "Himself saw John.", (0, 1, 0)),
    (1, QUOTED, (1, 0, 1)),
    (1, "Who did Mary see?", (0, 0, 1)),
]


def annotation_text(rows=ROWS, features=FEATURES, line_end: str = "\n") -> str:
    header = ["Source", "Domain", "Acceptability", "Sentence", *features]
    lines = ["\t".join(header)]
    lines += [
        "\t".join(["gj04", "In", str(label), sentence, *map(str, values)]) for label, sentence, values in rows
    ]
    return line_end.join(lines) + line_end


def write_release_folder(folder: Path, major: str | None = None, minor: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "CoLA_grammatical_annotations_major_features.tsv").write_text(
        major or annotation_text(), "utf-8"
    )
    (folder / "CoLA_grammatical_annotations_minor_features.tsv").write_text(
        minor
        or annotation_text(
            features=("Copula",), rows=[(label, text, values[:1]) for label, text, values in ROWS]
        ),
        "utf-8",
    )
    return folder


def test_release_folder_zip_with_macosx_entries_and_domain_cuts_read_the_same(tmp_path):
    folder = write_release_folder(tmp_path / "release")
    archive = tmp_path / "CoLA_grammatical_annotations.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for kind in ("major", "minor"):
            name = f"CoLA_grammatical_annotations_{kind}_features.tsv"
            handle.write(folder / name, f"CoLA_grammatical_annotations/{name}")
            # macOS resource forks: binary, not UTF-8, same file names; they must be skipped.
            handle.writestr(f"__MACOSX/CoLA_grammatical_annotations/._{name}", b"\x00\x05\x16\x07\xff\xfe")
    cuts = tmp_path / "cuts"
    cuts.mkdir()
    (cuts / "in_domain_major_features.tsv").write_text(annotation_text(rows=ROWS[:2]), "utf-8")
    (cuts / "out_of_domain_major_features.tsv").write_text(annotation_text(rows=ROWS[2:]), "utf-8")

    from_folder, from_zip, from_cuts = (read_annotations(path) for path in (folder, archive, cuts))
    assert set(from_folder) == set(from_zip) == {"major", "minor"}
    assert set(from_cuts) == {"major"}  # no minor file: only the major features
    for tables in (from_folder, from_zip, from_cuts):
        major = tables["major"]
        assert major.features == FEATURES
        assert [(row.acceptability, row.sentence, row.values) for row in major.rows] == ROWS
    assert from_cuts["major"].rows[2].line == 2  # lines count within each file
    assert from_folder["minor"].features == ("Copula",)


def test_crlf_line_ends_and_quotes_are_read_as_written(tmp_path):
    folder = write_release_folder(tmp_path / "crlf", major=annotation_text(line_end="\r\n"))
    major = read_annotations(folder)["major"]
    assert [row.sentence for row in major.rows][2] == QUOTED
    assert [row.values for row in major.rows] == [values for _, _, values in ROWS]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            annotation_text().replace("1\t0\t1\n", "1\t0\t2\n"),
            "line 4: feature 'Question' must be 0 or 1, got '2'",
        ),
        (
            annotation_text().replace("Himself saw John.\t0", "Himself saw John.\tyes"),
            "line 3: feature 'Simple' must be 0 or 1, got 'yes'",
        ),
        (annotation_text().replace("\t0\t0\t1\n", "\t0\t1\n"), "line 5: 6 tab-separated columns, expected 7"),
        (annotation_text().replace("Acceptability", "Label"), "line 1: expected the header"),
        (annotation_text().replace("gj04\tIn\t0", "gj04\tIn\t*"), "line 3: Acceptability must be 0 or 1"),
        (annotation_text() + "\n", "line 6: blank line"),
    ],
)
def test_a_malformed_file_is_an_error_naming_file_and_line(tmp_path, text, expected):
    folder = write_release_folder(tmp_path / "bad", major=text)
    with pytest.raises(DataError) as error:
        read_annotations(folder)
    assert "CoLA_grammatical_annotations_major_features.tsv" in str(error.value)
    assert expected in str(error.value)


def test_missing_or_ambiguous_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_annotations(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no major-features file.*in_domain_major_features.tsv.*notes.txt"):
        read_annotations(empty)
    both = write_release_folder(tmp_path / "both")
    (both / "in_domain_major_features.tsv").write_text(annotation_text(), "utf-8")
    with pytest.raises(DataError, match="annotate the same sentences"):
        read_annotations(both)


def test_matching_lists_unmatched_rows_label_disagreements_and_duplicates(tmp_path):
    rows = [*ROWS, (1, "Not in any split.", (1, 1, 1)), (0, "The cat sat.", (0, 0, 1))]
    tables = read_annotations(write_release_folder(tmp_path / "a", major=annotation_text(rows=rows)))
    in_domain = (["Who did Mary see?", " The cat sat.", QUOTED, "Himself saw John."], [1, 1, 1, 1])
    dev = (in_domain[0] + ["Unannotated."], in_domain[1] + [0])
    matched, issues = match_annotations({"major": tables["major"]}, {"in_domain_dev": in_domain, "dev": dev})

    # "Himself saw John." is 0 in the annotations, 1 in the data: listed once though in two splits.
    assert [(issue.issue, issue.row.line, issue.dataset_label) for issue in issues] == [
        ("label differs", 3, 1),
        ("unmatched", 6, None),
        ("duplicate of line 2", 7, None),
    ]
    np.testing.assert_array_equal(
        matched["in_domain_dev"].matrices["major"], [[0, 0, 1], [1, 0, 0], [1, 0, 1], [0, 1, 0]]
    )
    np.testing.assert_array_equal(matched["dev"].annotated["major"], [True, True, True, True, False])

    predicted = {
        "in_domain_dev": (np.array([1, 0, 1, 0]), np.array(in_domain[1])),
        "dev": (np.array([1, 0, 1, 0, 1]), np.array(dev[1])),
    }
    scores = {
        (s.split, s.feature): s for s in score_phenomena(matched, {"major": tables["major"]}, predicted)
    }
    assert scores[("in_domain_dev", "Simple")].n == 2 and scores[("dev", "Question")].n == 2
    assert scores[("in_domain_dev", "Simple")].accuracy == 0.5  # the dataset's label (1) is scored
    assert scores[("dev", "Binding")].n == 1


def test_vectorised_mcc_equals_sklearn():
    rng = np.random.default_rng(1)
    predictions = rng.integers(0, 2, size=(50, 30))
    labels = rng.integers(0, 2, size=(50, 30))
    predictions[0] = 1  # constant prediction: MCC 0, as sklearn
    labels[1] = 0
    expected = [matthews_corrcoef(y, p) for p, y in zip(predictions, labels, strict=True)]
    # Same arithmetic in another order: equal to float64 rounding.
    np.testing.assert_allclose(mcc_rows(predictions, labels), expected, rtol=0, atol=1e-12)


def test_bootstrap_interval_on_hand_worked_splits():
    balanced = np.array([0, 1] * 10)
    # All right: every resample with both classes scores 1 (one class only: 2 in 2^20 resamples, MCC 0).
    assert mcc_interval(balanced, balanced) == (1.0, 1.0)
    assert mcc_interval(1 - balanced, balanced) == (-1.0, -1.0)
    assert mcc_interval(np.ones(20, dtype=int), balanced) == (0.0, 0.0)  # a constant prediction
    # Two sentences, both right: a resample draws the same sentence twice (MCC 0) half the time, else
    # both (MCC 1), so the 2.5th percentile is 0 and the 97.5th is 1.
    indices = bootstrap_indices(2)
    same = (indices[:, 0] == indices[:, 1]).mean()
    assert 0.4 < same < 0.6
    assert mcc_interval(np.array([0, 1]), np.array([0, 1])) == (0.0, 1.0)


def test_bootstrap_interval_equals_a_loop_over_sklearn():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=40)
    predictions = np.where(rng.random(40) < 0.8, labels, 1 - labels)
    values = [matthews_corrcoef(labels[i], predictions[i]) for i in bootstrap_indices(40)]
    # Same resamples, same percentiles; the MCCs differ only by float rounding.
    np.testing.assert_allclose(
        mcc_interval(predictions, labels), np.percentile(values, [2.5, 97.5]), atol=1e-12
    )
    assert mcc_interval(predictions, labels) == mcc_interval(predictions, labels)  # fixed seed
