"""Inputs users really have, on the training side: Unicode sentences, sentences longer than
--max_seq_length, and a --max_seq_length the model cannot take."""

from __future__ import annotations

import pytest
from conftest import cola_rows, fast_args, write_tsv
from transformers import AutoTokenizer, BertConfig, DebertaV2Config, RobertaConfig

import run_cola
from recipe.training.arguments import ConfigError, DataArguments, parse_args
from recipe.training.data import load_cola_splits
from recipe.training.model import position_limit

NBSP = "\u00a0"
UNICODE_SENTENCES = [
    "Zoë's café served crème brûlée.",
    "猫がマットの上に座った。",
    "The cat 🐈 sat on the mat 🙂.",
    f"Mary{NBSP}saw{NBSP}John.",
    "Ünïcödé ñame — “quoted” …",
]
LONG_SENTENCE = " ".join(["the big red dog ran"] * 8) + "."  # 41 words: past --max_seq_length 16


def unicode_release(folder, n_train=120):
    """A release folder whose every split holds the Unicode sentences and one long sentence."""
    extra = [
        ("uni1", i % 2, "" if i % 2 else "*", s) for i, s in enumerate([*UNICODE_SENTENCES, LONG_SENTENCE])
    ]
    write_tsv(folder / "raw" / "in_domain_train.tsv", cola_rows(n_train, seed=1) + extra)
    write_tsv(folder / "raw" / "in_domain_dev.tsv", cola_rows(30, seed=2) + extra)
    return folder


def test_unicode_sentences_arrive_unchanged(tmp_path):
    data = unicode_release(tmp_path / "data")
    raw = load_cola_splits(DataArguments(data_dir=str(data), validation_split=0.0), seed=0)
    for split in ("train", "in_domain_dev"):
        # Byte for byte: the non-breaking spaces, emoji and CJK as written.
        assert list(raw[split]["sentence"])[-6:-1] == UNICODE_SENTENCES


def test_unicode_and_long_sentences_train_and_the_card_counts_truncation(tiny_bert, tmp_path):
    data = unicode_release(tmp_path / "data")
    out = tmp_path / "out"
    results = run_cola.main(
        *parse_args(fast_args(tiny_bert, data, out, "--max_seq_length", "16", "--save_strategy", "no"))
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    raw = load_cola_splits(DataArguments(data_dir=str(data)), seed=42)
    for split in ("train", "validation", "in_domain_dev"):
        expected = sum(len(ids) > 16 for ids in tokenizer(list(raw[split]["sentence"]))["input_ids"])
        assert results[f"{split}_truncated_sentences"] == expected
    assert results["in_domain_dev_truncated_sentences"] >= 1  # the long sentence is in dev for sure
    assert results["in_domain_dev_samples"] == 36  # every row evaluated, none dropped
    card = (out / "README.md").read_text(encoding="utf-8")
    line = next(line for line in card.splitlines() if line.startswith("Sentences longer than max_seq_length"))
    assert f"in_domain_dev {results['in_domain_dev_truncated_sentences']}" in line
    assert f"train {results['train_truncated_sentences']}" in line


def test_max_seq_length_past_the_position_limit_is_refused_before_the_data(tiny_bert, tmp_path, capsys):
    # No data at --data_dir: the error about the length must come first.
    flags = fast_args(tiny_bert, tmp_path / "no-data", tmp_path / "out", "--max_seq_length", "129")
    with pytest.raises(ConfigError, match=r"--max_seq_length 129 .* cover 128 tokens"):
        run_cola.main(*parse_args(flags))
    assert run_cola.cli(flags) == 2
    assert "Pass --max_seq_length 128 or less" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_position_limits_read_from_the_config():
    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    # RoBERTa counts positions from pad_token_id + 1: 514 embeddings, 512 tokens.
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(DebertaV2Config(position_biased_input=False)) is None  # relative positions only
