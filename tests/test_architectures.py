"""Every BERT-family architecture the configs name trains and evaluates through `main()` unchanged.

Each family gets a tiny model built from its config and a tokenizer trained here with the `tokenizers`
library on generated sentences (WordPiece for BERT/DistilBERT/ELECTRA, byte-level BPE for RoBERTa,
Unigram/SentencePiece-style for ALBERT and DeBERTa-v2/v3, BPE with [CLS]/[SEP] for ModernBERT), wrapped
in the tokenizer class that family ships with, with that family's special tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import WORDS, cola_rows, fast_args, write_tiny_bert
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AlbertConfig,
    AlbertTokenizer,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertTokenizer,
    DebertaV2Config,
    DebertaV2Tokenizer,
    DistilBertConfig,
    DistilBertTokenizer,
    ElectraConfig,
    ModernBertConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaTokenizer,
)

import run_cola
from recipe.training.arguments import parse_args

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def training_text() -> list[str]:
    """Generated sentences in the test data's vocabulary (the marker word included), lower and title case."""
    sentences = [row[3] for row in cola_rows(400, seed=11)]
    return sentences + [" ".join(WORDS), " ".join(WORDS).title()]


def train_wordpiece_vocab() -> dict[str, int]:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        training_text(), trainers.WordPieceTrainer(vocab_size=200, special_tokens=BERT_SPECIALS)
    )
    return tokenizer.get_vocab()


def train_unigram_vocab(specials: list[str], unk: str, lowercase: bool) -> list[tuple[str, float]]:
    """(piece, score) pairs of a Unigram model over Metaspace pieces, as SentencePiece would give."""
    tokenizer = Tokenizer(models.Unigram())
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.train_from_iterator(
        training_text(), trainers.UnigramTrainer(vocab_size=150, special_tokens=specials, unk_token=unk)
    )
    pieces = json.loads(tokenizer.to_str())["model"]["vocab"]
    # The family tokenizers find the unknown piece by its (piece, 0.0) entry.
    return [(piece, 0.0 if piece in specials else score) for piece, score in pieces]


def train_byte_level_bpe(specials: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        training_text(),
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return tokenizer


def bpe_vocab_and_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ")) for pair in model["merges"]]
    return model["vocab"], merges


def bert() -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    tokenizer = BertTokenizer(vocab=train_wordpiece_vocab())
    return BertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, **TINY), tokenizer


def electra() -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    tokenizer = BertTokenizer(vocab=train_wordpiece_vocab())  # what ELECTRA's checkpoints ship
    config = ElectraConfig(vocab_size=len(tokenizer), embedding_size=16, max_position_embeddings=128, **TINY)
    return config, tokenizer


def distilbert() -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    tokenizer = DistilBertTokenizer(vocab=train_wordpiece_vocab())
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=128
    )
    return config, tokenizer


def roberta() -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    # roberta-base's order: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last; positions start after padding_idx.
    vocab, merges = bpe_vocab_and_merges(train_byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **TINY,
    )
    return config, tokenizer


def albert() -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    # albert-base-v2's order: <pad>=0 <unk>=1 [CLS]=2 [SEP]=3 [MASK]=4.
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = AlbertTokenizer(vocab=train_unigram_vocab(specials, "<unk>", lowercase=True))
    config = AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        **TINY,
    )
    return config, tokenizer


def deberta_v3() -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    # deberta-v3-base's order: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3, [MASK] last; no token types, relative
    # positions with c2p/p2c attention (the v3 config on the v2 classes).
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    tokenizer = DebertaV2Tokenizer(vocab=train_unigram_vocab(specials, "[UNK]", lowercase=False))  # cased
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=128,
        type_vocab_size=0,
        relative_attention=True,
        position_buckets=32,
        max_relative_positions=-1,
        position_biased_input=False,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pad_token_id=tokenizer.pad_token_id,
        **TINY,
    )
    return config, tokenizer


def modernbert() -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    # ModernBERT ships a byte-level BPE with BERT's [CLS]/[SEP] template, as a PreTrainedTokenizerFast.
    backend = train_byte_level_bpe(BERT_SPECIALS)
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[(token, backend.token_to_id(token)) for token in ("[CLS]", "[SEP]")],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **{f"{name}_token": f"[{name.upper()}]" for name in ("pad", "unk", "cls", "sep", "mask")},
        model_input_names=["input_ids", "attention_mask"],
    )
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=128,
        local_attention=16,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **TINY,
    )
    return config, tokenizer


FAMILIES: dict[str, Callable[[], tuple[PretrainedConfig, PreTrainedTokenizerBase]]] = {
    "bert": bert,
    "distilbert": distilbert,
    "electra": electra,
    "roberta": roberta,
    "albert": albert,
    "deberta-v2": deberta_v3,
    "modernbert": modernbert,
}


def write_tiny_checkpoint(family: str, folder: Path) -> Path:
    """Save a tiny `family` model (random weights, seeded) and its tokenizer with save_pretrained."""
    config, tokenizer = FAMILIES[family]()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_evaluates_and_reloads(family, cola_dir, tmp_path):
    checkpoint = write_tiny_checkpoint(family, tmp_path / f"tiny-{family}")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    sentence = "Mary gave the dog a red ball."
    encoded = tokenizer(sentence)
    # The family's tokenizer, really splitting words (not one [UNK] per word), with its own specials.
    assert tokenizer.unk_token_id not in encoded["input_ids"], tokenizer.convert_ids_to_tokens(
        encoded["input_ids"]
    )
    assert (
        encoded["input_ids"][0] == tokenizer.cls_token_id
        and encoded["input_ids"][-1] == tokenizer.sep_token_id
    )

    out = tmp_path / "out"
    results = run_cola.main(
        *parse_args(
            fast_args(
                checkpoint,
                cola_dir,
                out,
                "--max_steps",
                "4",
                "--save_strategy",
                "no",
                "--eval_strategy",
                "no",
            )
        )
    )

    all_results = json.loads((out / "all_results.json").read_text())
    for split in ("eval", "in_domain_dev", "out_of_domain_dev"):
        assert f"{split}_matthews_correlation" in all_results
        assert all_results[f"{split}_loss"] == results[f"{split}_loss"]
    assert json.loads((out / "train_results.json").read_text())["train_loss"] > 0

    # The saved run reloads as the same architecture, and the reloaded tokenizer's output feeds it as is.
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert (
        model.config.model_type
        == AutoModelForSequenceClassification.from_pretrained(checkpoint).config.model_type
    )
    assert model.config.id2label == {0: "unacceptable", 1: "acceptable"}
    reloaded_tokenizer = AutoTokenizer.from_pretrained(out)
    batch = reloaded_tokenizer([sentence, "Zork the cat sat."], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_token_type_ids_dropped_when_the_model_takes_none(cola_dir, tmp_path):
    """transformers 5 gives a `distilbert` checkpoint without a tokenizer class a BertTokenizer, which
    makes token_type_ids; the run's tokenizer (and the copy saved with the model) stops making them."""
    config, _ = distilbert()
    checkpoint = tmp_path / "distilbert-bert-tokenizer"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(checkpoint)
    BertTokenizer(vocab=train_wordpiece_vocab()).save_pretrained(checkpoint)
    assert "token_type_ids" in AutoTokenizer.from_pretrained(checkpoint)("a cat")

    out = tmp_path / "out"
    run_cola.main(
        *parse_args(fast_args(checkpoint, cola_dir, out, "--max_steps", "2", "--save_strategy", "no"))
    )
    saved = AutoTokenizer.from_pretrained(out)
    assert "token_type_ids" not in saved("a cat")
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model(**saved(["a cat sat."], return_tensors="pt")).logits.shape == (1, 2)


CUSTOM_CONFIG_CODE = """from transformers import BertConfig


class CustomBertConfig(BertConfig):
    model_type = "custom-bert"
"""
CUSTOM_MODEL_CODE = """from transformers import BertForSequenceClassification

from .configuration_custom import CustomBertConfig


class CustomBertForSequenceClassification(BertForSequenceClassification):
    config_class = CustomBertConfig
"""


def write_custom_code_checkpoint(folder: Path) -> Path:
    """A tiny BERT whose config.json maps the Auto classes to code shipped in the folder (auto_map)."""
    write_tiny_bert(folder)
    (folder / "configuration_custom.py").write_text(CUSTOM_CONFIG_CODE)
    (folder / "modeling_custom.py").write_text(CUSTOM_MODEL_CODE)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "custom-bert"
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomBertConfig",
        "AutoModelForSequenceClassification": "modeling_custom.CustomBertForSequenceClassification",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_checkpoint_with_custom_code_is_refused_unless_trusted(cola_dir, tmp_path, capsys):
    checkpoint = write_custom_code_checkpoint(tmp_path / "custom")
    flags = fast_args(checkpoint, cola_dir, tmp_path / "out", "--max_steps", "2", "--save_strategy", "no")

    assert run_cola.cli(flags) == 2
    error = capsys.readouterr().err
    assert "--trust_remote_code true" in error, error
    assert "modeling_custom.CustomBertForSequenceClassification" in error, error
    assert not (tmp_path / "out" / "all_results.json").exists()

    results = run_cola.main(*parse_args([*flags, "--trust_remote_code", "true"]))
    assert "in_domain_dev_matthews_correlation" in results
    assert type(
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", trust_remote_code=True)
    ).__name__ == ("CustomBertForSequenceClassification")
