"""CoLA loading from every source and layout, the validation strategies, and bad input refused by file and line."""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

import pytest
from cola_layouts import (
    hub_split,
    read_rows,
    write_glue_folder,
    write_hub_standin,
    write_lines,
    write_release_zip,
)
from conftest import cola_rows, write_cola_release, write_tsv
from transformers import AutoTokenizer, TrainingArguments

from recipe.training.arguments import ConfigError, DataArguments
from recipe.training.data import (
    DataError,
    check_splits_for_run,
    count_shared_sentences,
    load_cola_splits,
    read_cola_tsv,
    resolve_data_source,
    split_dev_by_source,
)
from recipe.training.tokenization import count_truncated, tokenize_cola

# The real release, ../shared beside the repository (tests marked slow skip without it).
REAL_COLA = Path(__file__).resolve().parent.parent.parent / "shared" / "cola_public"


def data_args(data_dir: Path | str, tmp_path: Path, **overrides) -> DataArguments:
    return DataArguments(data_dir=str(data_dir), data_cache_dir=str(tmp_path / "cache"), **overrides)


def sentences(dataset) -> list[str]:
    return list(dataset["sentence"])


# --- sources and layouts -------------------------------------------------------------------------------


def test_release_folder_gives_every_split(cola_dir, tmp_path):
    raw = load_cola_splits(data_args(cola_dir, tmp_path), seed=42)
    assert list(raw) == ["train", "validation", "in_domain_dev", "out_of_domain_dev", "dev"]
    assert (len(raw["train"]), len(raw["validation"])) == (180, 20)
    assert (len(raw["in_domain_dev"]), len(raw["out_of_domain_dev"]), len(raw["dev"])) == (60, 50, 110)
    assert sentences(raw["dev"]) == sentences(raw["in_domain_dev"]) + sentences(raw["out_of_domain_dev"])
    # Quotes survive (quoting is off) and empty marks stay empty strings.
    assert 'Susan whispered "shut up" to the dog.' in sentences(raw["train"]) + sentences(raw["validation"])
    assert "" in raw["in_domain_dev"]["mark"]


def test_release_without_out_of_domain_has_no_union(tmp_path):
    release = write_cola_release(tmp_path / "cola_public", n_ood=None)
    raw = load_cola_splits(data_args(release, tmp_path), seed=0)
    assert "out_of_domain_dev" not in raw and "dev" not in raw and len(raw["in_domain_dev"]) == 60


def test_glue_layout_is_detected_and_dev_split_by_source(cola_dir, tmp_path):
    glue = write_glue_folder(cola_dir, tmp_path / "glue_data" / "CoLA", n_test=30)
    assert resolve_data_source(data_args(glue, tmp_path)).layout == "glue"
    raw = load_cola_splits(data_args(glue, tmp_path), seed=0)
    assert list(raw) == ["train", "validation", "in_domain_dev", "out_of_domain_dev", "dev", "test"]
    # dev.tsv was shuffled together; the source column recovers exactly the two release files.
    in_domain = [row[3] for row in read_rows(cola_dir / "raw" / "in_domain_dev.tsv")]
    out_of_domain = [row[3] for row in read_rows(cola_dir / "raw" / "out_of_domain_dev.tsv")]
    assert sorted(sentences(raw["in_domain_dev"])) == sorted(in_domain)
    assert sorted(sentences(raw["out_of_domain_dev"])) == sorted(out_of_domain)
    assert len(raw["dev"]) == len(in_domain) + len(out_of_domain)
    assert raw["test"]["idx"] == list(range(30)) and set(raw["test"]["label"]) == {-1}


def test_split_dev_by_source_keeps_row_order_and_every_row(cola_dir):
    dev = read_cola_tsv(cola_dir / "raw" / "in_domain_dev.tsv")
    in_domain, out_of_domain = split_dev_by_source(dev, {"gen1"})
    assert (len(in_domain), len(out_of_domain)) == (60, 0)
    in_domain, out_of_domain = split_dev_by_source(dev, set())
    assert (len(in_domain), len(out_of_domain)) == (0, 60)
    assert sentences(out_of_domain) == sentences(dev)


def test_release_zip_path_is_extracted_into_the_cache_and_reused(cola_dir, tmp_path):
    zip_path = write_release_zip(cola_dir, tmp_path / "downloads" / "cola_public_1.1.zip")
    args = data_args(zip_path, tmp_path)
    first = resolve_data_source(args)
    assert Path(first.location).is_relative_to(tmp_path / "cache" / "extracted")
    marker = Path(first.location) / "raw" / "in_domain_train.tsv"
    stamp = marker.stat().st_mtime_ns
    raw = load_cola_splits(args, seed=0)
    assert (len(raw["train"]), len(raw["out_of_domain_dev"])) == (180, 50)
    assert resolve_data_source(args) == first and marker.stat().st_mtime_ns == stamp


def test_a_zip_without_the_release_inside_is_refused(tmp_path):
    other = tmp_path / "other"
    write_lines(other / "notes.txt", ["hello"])
    zip_path = write_release_zip(other, tmp_path / "other.zip")
    with pytest.raises(DataError, match="in_domain_train.tsv"):
        load_cola_splits(data_args(zip_path, tmp_path), seed=0)
    assert not any((tmp_path / "cache").rglob("*.tsv")), "nothing half-extracted may stay in the cache"


@pytest.mark.parametrize("with_configs", [True, False], ids=["hub-repo-layout", "plain-folder"])
def test_hub_schema_dataset_from_a_local_folder(cola_dir, tmp_path, with_configs):
    folder = write_hub_standin(cola_dir, tmp_path / "glue", with_configs=with_configs)
    args = data_args(tmp_path / "unused", tmp_path, dataset_name=str(folder))
    raw = load_cola_splits(args, seed=0)
    assert list(raw) == ["train", "validation", "dev", "test"]
    assert (len(raw["train"]), len(raw["validation"]), len(raw["dev"]), len(raw["test"])) == (
        180,
        20,
        110,
        25,
    )
    assert set(raw["test"]["label"]) == {-1}
    assert raw["train"].features["label"].names == ["unacceptable", "acceptable"]


def test_two_local_copies_with_the_same_name_each_load_their_own_rows(tmp_path):
    for n_train in (30, 40):
        release = write_cola_release(tmp_path / f"r{n_train}", n_train=n_train, n_dev=10, n_ood=5)
        folder = write_hub_standin(release, tmp_path / f"copy{n_train}" / "glue")
        args = data_args(tmp_path, tmp_path, dataset_name=str(folder), validation_strategy="none")
        assert len(load_cola_splits(args, seed=0)["train"]) == n_train


def test_unreachable_hub_dataset_says_what_was_tried_and_how_to_pass_a_local_copy(tmp_path):
    args = data_args(tmp_path / "unused", tmp_path, dataset_name="nyu-mll/glue")
    with pytest.raises(DataError) as error:
        load_cola_splits(args, seed=0)
    message = str(error.value)
    assert (
        "Hugging Face Hub dataset 'nyu-mll/glue'" in message and "--dataset_name /path/to/folder" in message
    )


def test_hub_dataset_with_the_wrong_schema_is_refused(cola_dir, tmp_path):
    folder = write_hub_standin(cola_dir, tmp_path / "glue", with_configs=False)
    import datasets

    args = data_args(tmp_path, tmp_path, dataset_name=str(folder))
    wrong = datasets.Dataset.from_dict({"text": ["A b."], "label": [1]})
    wrong.to_parquet(str(folder / "train.parquet"))
    with pytest.raises(DataError, match="every split needs the nyu-mll/glue cola columns"):
        load_cola_splits(args, seed=0)  # splits that disagree
    for split in ("validation", "test"):
        wrong.to_parquet(str(folder / f"{split}.parquet"))
    with pytest.raises(DataError, match="split 'train': missing column.*sentence"):
        load_cola_splits(args, seed=0)
    folder = write_hub_standin(cola_dir, tmp_path / "glue2", with_configs=False)
    bad_label = hub_split([["gj04", "1", "", "A b."], ["gj04", "1", "", "C."]]).to_dict()
    bad_label["label"][1] = 3
    datasets.Dataset.from_dict(bad_label).to_parquet(str(folder / "train.parquet"))
    with pytest.raises(DataError, match="split 'train', idx 1: label 3"):
        load_cola_splits(data_args(tmp_path, tmp_path, dataset_name=str(folder)), seed=0)


# --- validation strategies --------------------------------------------------------------------------------


def test_validation_dev_trains_on_all_of_train(cola_dir, tmp_path):
    raw = load_cola_splits(data_args(cola_dir, tmp_path, validation_strategy="dev"), seed=0)
    assert len(raw["train"]) == 200
    assert sentences(raw["validation"]) == sentences(raw["in_domain_dev"])


def test_validation_none_trains_on_everything_and_needs_eval_strategy_no(cola_dir, tmp_path):
    raw = load_cola_splits(data_args(cola_dir, tmp_path, validation_strategy="none"), seed=0)
    assert "validation" not in raw and len(raw["train"]) == 200
    with pytest.raises(ConfigError, match="--eval_strategy no"):
        check_splits_for_run(raw, TrainingArguments(output_dir=str(tmp_path), eval_strategy="epoch"))
    check_splits_for_run(raw, TrainingArguments(output_dir=str(tmp_path), eval_strategy="no"))


def test_do_predict_without_an_unlabeled_test_set_is_refused_before_training(cola_dir, tmp_path):
    raw = load_cola_splits(data_args(cola_dir, tmp_path), seed=0)
    with pytest.raises(DataError, match="test.tsv"):
        check_splits_for_run(raw, TrainingArguments(output_dir=str(tmp_path), do_predict=True))


def test_stratified_split_keeps_the_label_balance(tmp_path):
    # 100 rows, 10 unacceptable: a 20% stratified validation set holds exactly 2 of them, whatever the seed.
    rows = [("gen1", 0 if i % 10 == 0 else 1, "", f"The cat {i} sat.") for i in range(100)]
    write_tsv(tmp_path / "d" / "raw" / "in_domain_train.tsv", rows)
    write_tsv(tmp_path / "d" / "raw" / "in_domain_dev.tsv", rows[:5])
    counts = set()
    for seed in range(6):
        args = data_args(tmp_path / "d", tmp_path, validation_split=0.2, stratify_validation=True)
        raw = load_cola_splits(args, seed=seed)
        counts.add(raw["validation"]["label"].count(0))
    assert counts == {2}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"validation_strategy": "holdout"}, "--validation_strategy must be one of split, dev, none"),
        ({"validation_strategy": "dev", "stratify_validation": True}, "--stratify_validation applies"),
        ({"download_sha256": "abc"}, "64 hex digits"),
        ({"download_url": "ftp://x/y.zip"}, "--download_url"),
        ({"download": True, "dataset_name": "nyu-mll/glue"}, "pass one of them"),
    ],
)
def test_bad_data_arguments_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        DataArguments(**overrides)


# --- bad input: a clear error naming file and line -----------------------------------------------------

GOOD_LINES = ["gj04\t1\t\tThe cat sat.", "gj04\t0\t*\tCat the sat.", "gj04\t1\t\tA dog ran."]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"gj04\t1\t\tThe cat sat.\ngj04\t0\tCat the sat.\n", r"line 2: 3 tab-separated columns, expected 4"),
        (b"gj04\t1\t\tThe cat sat.\ngj04\t1\t\tA\tdog.\n", r"line 2: 5 tab-separated columns"),
        (b"gj04\t1\t\tThe cat sat.\ngj04\t2\t\tA dog.\n", r"line 2: label must be 0 or 1, got '2'"),
        (b"gj04\tyes\t\tThe cat sat.\n", r"line 1: label must be 0 or 1, got 'yes'"),
        (b"gj04\t1\t\tThe cat sat.\ngj04\t1\t\t  \n", r"line 2: empty sentence"),
        (
            b"gj04\t1\t\tThe cat sat.\ngj04\t1\t\tCaf\xe9 au lait.\n",
            r"line 2: byte 0xe9 at column 12 is not UTF-8",
        ),
        (b"gj04\t1\t\tThe cat sat.\n\ngj04\t1\t\tA dog ran.\n", r"line 2: blank line"),
        (b"gj04\t1\t\tThe cat\rsat.\n", r"line 1: a carriage return inside the line"),
        (b"", r"the file is empty"),
        (b"\xef\xbb\xbf\r\n", r"the file is empty"),
    ],
    ids=[
        "too-few-columns",
        "too-many-columns",
        "label-2",
        "label-word",
        "empty-sentence",
        "not-utf8",
        "blank-line",
        "stray-cr",
        "empty-file",
        "bom-only",
    ],
)
def test_bad_train_file_is_refused_naming_file_and_line(tmp_path, content, message):
    release = write_cola_release(tmp_path / "cola_public", n_train=20, n_dev=5, n_ood=None)
    bad = release / "raw" / "in_domain_train.tsv"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        load_cola_splits(data_args(release, tmp_path), seed=0)
    assert str(bad) in str(error.value)


def test_windows_line_endings_and_a_bom_give_the_same_examples(tmp_path):
    clean = write_tsv(tmp_path / "clean.tsv", cola_rows(40, seed=4))
    windows = tmp_path / "windows.tsv"
    windows.write_bytes(codecs.BOM_UTF8 + clean.read_bytes().replace(b"\n", b"\r\n"))
    expected, got = read_cola_tsv(clean).to_list(), read_cola_tsv(windows).to_list()
    assert got == expected and len(got) == 40
    assert not got[0]["source"].startswith("\ufeff")
    assert not any(row["sentence"].endswith("\r") for row in got)


def test_missing_folder_says_which_layouts_were_expected_and_what_was_found(tmp_path):
    with pytest.raises(DataError, match="the folder does not exist") as error:
        load_cola_splits(data_args(tmp_path / "nowhere", tmp_path), seed=0)
    for expected in ("raw/in_domain_train.tsv", "train.tsv", "cola_public_1.1.zip", "--download"):
        assert expected in str(error.value)
    write_lines(tmp_path / "wrong" / "sentences.csv", ["a,b"])
    with pytest.raises(DataError, match="it holds: sentences.csv"):
        load_cola_splits(data_args(tmp_path / "wrong", tmp_path), seed=0)


def test_partial_layouts_name_the_missing_file(tmp_path):
    write_tsv(tmp_path / "rel" / "raw" / "in_domain_train.tsv", cola_rows(5, 0))
    with pytest.raises(DataError, match=r"missing raw/in_domain_dev.tsv"):
        load_cola_splits(data_args(tmp_path / "rel", tmp_path), seed=0)
    write_tsv(tmp_path / "glue" / "train.tsv", cola_rows(5, 0))
    with pytest.raises(DataError, match="GLUE CoLA layout but dev.tsv is missing"):
        load_cola_splits(data_args(tmp_path / "glue", tmp_path), seed=0)


def test_glue_test_file_needs_its_header(cola_dir, tmp_path):
    glue = write_glue_folder(cola_dir, tmp_path / "CoLA")
    write_lines(glue / "test.tsv", ["0\tThe cat sat."])
    with pytest.raises(DataError, match=r"test.tsv, line 1: expected the header index<TAB>sentence"):
        load_cola_splits(data_args(glue, tmp_path), seed=0)
    write_lines(glue / "test.tsv", ["index\tsentence", "0\tThe cat sat.", "1"])
    with pytest.raises(DataError, match=r"test.tsv, line 3: 1 tab-separated columns, expected 2"):
        load_cola_splits(data_args(glue, tmp_path), seed=0)


def test_cli_prints_one_clear_error_for_a_bad_file(tmp_path, capsys):
    import run_cola

    release = write_cola_release(tmp_path / "cola_public", n_train=20, n_dev=5, n_ood=None)
    (release / "raw" / "in_domain_dev.tsv").write_bytes(b"gj04\t1\t\tThe cat sat.\ngj04\t7\t\tNo.\n")
    status = run_cola.cli(["--data_dir", str(release), "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2 and "in_domain_dev.tsv, line 2: label must be 0 or 1" in err
    assert "Traceback" not in err


# --- what is logged at load and tokenization -------------------------------------------------------------


def test_load_logs_sizes_balance_lengths_and_duplicates(cola_dir, tmp_path, caplog):
    dev_rows = read_rows(cola_dir / "raw" / "in_domain_dev.tsv")
    train_sentences = [row[3] for row in read_rows(cola_dir / "raw" / "in_domain_train.tsv")]
    dev_rows[0][3], dev_rows[1][3] = train_sentences[5], train_sentences[6]
    write_lines(cola_dir / "raw" / "in_domain_dev.tsv", ["\t".join(row) for row in dev_rows])
    with caplog.at_level(logging.INFO, logger="recipe.training.data"):
        raw = load_cola_splits(data_args(cola_dir, tmp_path, validation_strategy="dev"), seed=0)
    acceptable = sum(raw["in_domain_dev"]["label"])
    assert f"in_domain_dev: 60 examples, {acceptable} acceptable" in caplog.text
    assert "words per sentence min" in caplog.text
    assert "in_domain_dev: 2 of 60 sentences also occur in train" in caplog.text
    assert count_shared_sentences(raw["train"], raw["out_of_domain_dev"]) == 0


def test_truncation_is_counted_and_unlabeled_splits_lose_their_label(tiny_bert, cola_dir, tmp_path, caplog):
    glue = write_glue_folder(cola_dir, tmp_path / "CoLA")
    args = data_args(glue, tmp_path, max_seq_length=8)
    raw = load_cola_splits(args, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    expected = sum(len(ids) > 8 for ids in tokenizer(list(raw["in_domain_dev"]["sentence"]))["input_ids"])
    assert 0 < expected < len(raw["in_domain_dev"])
    with caplog.at_level(logging.INFO, logger="recipe.training.tokenization"):
        counts = count_truncated(raw, tokenizer, 8)
    tokenized = tokenize_cola(raw, tokenizer, args)
    assert f"in_domain_dev: {expected} of 60 sentences are longer than --max_seq_length 8" in caplog.text
    assert counts["in_domain_dev_truncated_sentences"] == expected
    assert set(counts) == {f"{split}_truncated_sentences" for split in raw}
    assert max(len(ids) for ids in tokenized["in_domain_dev"]["input_ids"]) == 8
    assert tokenized["train"].column_names == ["label", "input_ids", "token_type_ids", "attention_mask"]
    assert "label" not in tokenized["test"].column_names and len(tokenized["test"]) == 30


# --- the real data ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not (REAL_COLA / "raw" / "in_domain_train.tsv").is_file(), reason=f"real CoLA not found at {REAL_COLA}"
)
def test_real_cola_counts_are_exact(tmp_path):
    raw = load_cola_splits(data_args(REAL_COLA, tmp_path, validation_strategy="none"), seed=0)
    assert (len(raw["train"]), sum(raw["train"]["label"])) == (8551, 6023)
    assert (len(raw["in_domain_dev"]), sum(raw["in_domain_dev"]["label"])) == (527, 365)
    # The GLUE dev split relies on this: every in-domain dev source also occurs in train.
    assert set(raw["in_domain_dev"]["source"]) <= set(raw["train"]["source"])
    split = load_cola_splits(data_args(REAL_COLA, tmp_path), seed=42)
    assert (len(split["train"]), len(split["validation"])) == (7695, 856)
