"""The last layer computed for [CLS] only gives the stock model's logits and gradients, with less work."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from transformers import (
    AlbertConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    CamembertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    PretrainedConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from recipe.arguments import ModelArguments
from recipe.cls_only import apply_last_layer_cls_only
from recipe.model import load_model

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SUPPORTED = {
    "bert": lambda **kw: BertConfig(vocab_size=60, **TINY, **kw),
    "roberta": lambda **kw: RobertaConfig(
        vocab_size=60, pad_token_id=1, max_position_embeddings=40, **TINY, **kw
    ),
    "xlm-roberta": lambda **kw: XLMRobertaConfig(vocab_size=60, pad_token_id=1, **TINY, **kw),
    "camembert": lambda **kw: CamembertConfig(vocab_size=60, pad_token_id=1, **TINY, **kw),
    "electra": lambda **kw: ElectraConfig(vocab_size=60, embedding_size=16, **TINY, **kw),
}
UNSUPPORTED = {
    "distilbert": lambda: DistilBertConfig(vocab_size=60, dim=32, hidden_dim=64, n_layers=2, n_heads=2),
    "albert": lambda: AlbertConfig(vocab_size=60, embedding_size=16, **TINY),
    "deberta-v2": lambda: DebertaV2Config(vocab_size=60, **TINY),
}


def padded_batch(rows: int = 6, length: int = 9, seed: int = 1) -> dict[str, torch.Tensor]:
    """Token ids with ragged right padding: row i keeps length - i % 4 tokens."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 60, (rows, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for i in range(rows):
        attention_mask[i, length - i % 4 :] = 0
    input_ids[attention_mask == 0] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def stock_and_patched(config: PretrainedConfig) -> tuple[torch.nn.Module, torch.nn.Module, bool]:
    torch.manual_seed(0)
    stock = AutoModelForSequenceClassification.from_config(config)
    patched = copy.deepcopy(stock)
    return stock, patched, apply_last_layer_cls_only(patched)


def ffn_rows_seen(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """How many positions per row the last layer's feed-forward block was run on."""
    seen = []
    dense = model.base_model.encoder.layer[-1].intermediate.dense
    handle = dense.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[1]))
    with torch.no_grad():
        model(**batch)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", sorted(SUPPORTED))
def test_same_logits_and_gradients_with_one_position_in_the_last_layer(family: str, attention: str) -> None:
    # Dropout off so that stock and patched compute the same function in training mode too.
    config = SUPPORTED[family](hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config._attn_implementation = attention
    stock, patched, applied = stock_and_patched(config)
    assert applied
    batch = padded_batch()
    assert ffn_rows_seen(stock, batch) == 9 and ffn_rows_seen(patched, batch) == 1

    stock.eval(), patched.eval()
    with torch.no_grad():
        torch.testing.assert_close(patched(**batch).logits, stock(**batch).logits, rtol=1e-5, atol=1e-6)

    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    for model in (stock, patched):
        model.train()
        model(**batch, labels=labels).loss.backward()
    for (name, a), (_, b) in zip(stock.named_parameters(), patched.named_parameters(), strict=True):
        torch.testing.assert_close(
            b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_training_mode_dropout_still_applies_in_the_last_layer() -> None:
    _, patched, applied = stock_and_patched(SUPPORTED["bert"](hidden_dropout_prob=0.5))
    assert applied
    patched.train()
    batch = padded_batch()
    first, second = (patched(**batch).logits for _ in range(2))
    assert not torch.equal(first, second)


@pytest.mark.parametrize("family", sorted(UNSUPPORTED))
def test_other_architectures_are_left_unchanged(family: str, caplog: pytest.LogCaptureFixture) -> None:
    model = AutoModelForSequenceClassification.from_config(UNSUPPORTED[family]())
    with caplog.at_level("INFO", logger="recipe.cls_only"):
        assert not apply_last_layer_cls_only(model)
    assert f"model type '{family}'" in caplog.text
    assert all("forward" not in vars(module) for module in model.modules())


def test_a_head_reading_another_position_fails_the_self_check(caplog: pytest.LogCaptureFixture) -> None:
    model = AutoModelForSequenceClassification.from_config(SUPPORTED["bert"]())
    pooler = model.bert.pooler

    def last_position_pooler(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, -1]))

    pooler.forward = types.MethodType(last_position_pooler, pooler)
    with caplog.at_level("WARNING", logger="recipe.cls_only"):
        assert not apply_last_layer_cls_only(model)
    assert "changed the logits" in caplog.text
    assert "forward" not in vars(model.bert.encoder.layer[-1])  # restored to the class's forward
    assert ffn_rows_seen(model, padded_batch()) == 9


def test_global_random_state_is_untouched() -> None:
    model = AutoModelForSequenceClassification.from_config(SUPPORTED["bert"]())
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert apply_last_layer_cls_only(model)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training  # the self-check's eval() is undone


def test_load_model_applies_it_by_default_and_the_flag_turns_it_off(tiny_bert) -> None:
    batch = padded_batch()
    on = load_model(ModelArguments(model_name_or_path=str(tiny_bert)))
    off = load_model(ModelArguments(model_name_or_path=str(tiny_bert), last_layer_cls_only=False))
    assert ffn_rows_seen(on, batch) == 1 and ffn_rows_seen(off, batch) == 9
    on.eval(), off.eval()
    with torch.no_grad():
        torch.testing.assert_close(on(**batch).logits, off(**batch).logits, rtol=1e-5, atol=1e-6)
