"""AdamW and clipping on the looked-up embedding rows only (recipe/embedding_rows.py) match the stock ones."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from conftest import fast_args
from transformers import AutoModelForSequenceClassification, BertConfig, TrainingArguments

import run_cola
from recipe.arguments import parse_args
from recipe.embedding_rows import LookedUpRows, RowSparseAdamW
from recipe.trainer import CoLATrainer

VOCAB = 80


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,  # the two copies must compute the same function
        attention_probs_dropout_prob=0.0,
    )
    return AutoModelForSequenceClassification.from_config(config).train()


def batches(steps: int, micro: int = 1) -> list[list[dict[str, torch.Tensor]]]:
    """Per step, `micro` batches of ids from a sliding window of the vocabulary (rows come and go)."""
    generator = torch.Generator().manual_seed(3)
    out = []
    for step in range(steps):
        window = (5 + 7 * step, 25 + 7 * step)
        out.append(
            [
                {
                    "input_ids": torch.randint(*window, (4, 6), generator=generator),
                    "labels": torch.randint(0, 2, (4,), generator=generator),
                }
                for _ in range(micro)
            ]
        )
    return out


def train(model, optimizer, data, max_norm: float | None, clip) -> list[float]:
    norms = []
    for step in data:
        for batch in step:
            (model(**batch).loss / len(step)).backward()
        if max_norm is not None:
            norms.append(float(clip(max_norm)))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return norms


@pytest.mark.parametrize(("max_norm", "micro"), [(0.05, 1), (None, 1), (0.05, 2), (100.0, 1)])
def test_matches_stock_adamw_and_clipping(max_norm: float | None, micro: int) -> None:
    stock_model, sparse_model = tiny_model(), tiny_model()
    table = sparse_model.get_input_embeddings().weight
    initial = table.detach().clone()
    kwargs = {"lr": 1e-2, "weight_decay": 0.0, "fused": True}
    stock = torch.optim.AdamW(stock_model.parameters(), **kwargs)
    sparse = RowSparseAdamW(
        sparse_model.parameters(),
        table=table,
        rows=LookedUpRows(sparse_model.get_input_embeddings()),
        **kwargs,
    )
    data = batches(6, micro)
    stock_norms = train(
        stock_model,
        stock,
        data,
        max_norm,
        lambda n: torch.nn.utils.clip_grad_norm_(stock_model.parameters(), n),
    )
    sparse_norms = train(
        sparse_model, sparse, data, max_norm, lambda n: sparse.clip_grad_norm_(sparse_model.parameters(), n)
    )
    assert sparse.sparse
    assert sparse_norms == pytest.approx(stock_norms, rel=1e-5)
    for (name, a), (_, b) in zip(
        stock_model.named_parameters(), sparse_model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    # Moments are kept for the looked-up rows only, and the other rows did not move at all.
    looked_up = torch.cat([b["input_ids"].reshape(-1) for step in data for b in step]).unique()
    state = sparse.state[table]
    assert torch.equal(state["rows"].sort().values, looked_up)
    assert state["exp_avg_rows"].shape == (len(looked_up), table.shape[1])
    never = torch.ones(VOCAB, dtype=torch.bool)
    never[looked_up] = False
    assert torch.equal(table.detach()[never], initial[never])
    assert not torch.equal(table.detach()[looked_up], initial[looked_up])
    # Clipping left the same (clipped) gradient on the table as the stock clip would: checked through the
    # updates above; the rows' moments equal the stock optimizer's on the same rows.
    stock_state = stock.state[stock_model.get_input_embeddings().weight]
    order = state["rows"]
    torch.testing.assert_close(state["exp_avg_rows"], stock_state["exp_avg"][order], rtol=1e-5, atol=1e-9)


def test_state_dict_round_trip_continues_the_same_run() -> None:
    def fresh(model):
        table = model.get_input_embeddings().weight
        rows = LookedUpRows(model.get_input_embeddings())
        return RowSparseAdamW(model.parameters(), table=table, rows=rows, lr=1e-2, weight_decay=0.0)

    data = batches(6)
    straight_model = tiny_model()
    straight = fresh(straight_model)
    clip = lambda opt, model: lambda n: opt.clip_grad_norm_(model.parameters(), n)  # noqa: E731
    train(straight_model, straight, data, 0.05, clip(straight, straight_model))

    first_model = tiny_model()
    first = fresh(first_model)
    train(first_model, first, data[:3], 0.05, clip(first, first_model))
    saved_state = copy.deepcopy(first.state_dict())
    resumed_model = copy.deepcopy(first_model)
    resumed = fresh(resumed_model)
    resumed.load_state_dict(saved_state)  # casts the row ids to float: the step must cope
    train(resumed_model, resumed, data[3:], 0.05, clip(resumed, resumed_model))
    for a, b in zip(straight_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_table_read_outside_the_lookup_falls_back_to_the_whole_table(caplog) -> None:
    stock_model, model = tiny_model(), tiny_model()
    table = model.get_input_embeddings().weight
    optimizer = RowSparseAdamW(
        model.parameters(),
        table=table,
        rows=LookedUpRows(model.get_input_embeddings()),
        lr=1e-2,
        weight_decay=0.0,
    )
    stock = torch.optim.AdamW(stock_model.parameters(), lr=1e-2, weight_decay=0.0)
    for m, opt in ((stock_model, stock), (model, optimizer)):
        for step in batches(3):
            batch = step[0]
            weight = m.get_input_embeddings().weight
            loss = m(**batch).loss + 1e-3 * weight.sum()  # every row gets a gradient
            loss.backward()
            with caplog.at_level(logging.WARNING, logger="recipe.embedding_rows"):
                opt.step()
            opt.zero_grad(set_to_none=True)
    assert not optimizer.sparse
    assert "non-zero outside the rows" in caplog.text
    for a, b in zip(stock_model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def make_trainer(tiny_bert, tmp_path, **arguments) -> CoLATrainer:
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **arguments)
    return CoLATrainer(model=model, args=args)


def test_the_trainer_uses_it_only_where_it_holds(tiny_bert, tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="recipe.embedding_rows"):
        assert isinstance(make_trainer(tiny_bert, tmp_path).create_optimizer(), RowSparseAdamW)
        decayed = make_trainer(tiny_bert, tmp_path, weight_decay=0.01).create_optimizer()
        assert type(decayed) is torch.optim.AdamW
        assert "the table has weight decay (0.01)" in caplog.text
        sgd = make_trainer(tiny_bert, tmp_path, optim="sgd").create_optimizer()
        assert not isinstance(sgd, RowSparseAdamW)
        assert "--optim sgd" in caplog.text
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    off = CoLATrainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True),
        skip_untouched_embedding_rows=False,
    )
    assert type(off.create_optimizer()) is torch.optim.AdamW


def test_training_with_and_without_it_ends_the_same(tiny_bert, cola_dir, tmp_path) -> None:
    results = {}
    for flag in ("true", "false"):
        out = tmp_path / flag
        argv = fast_args(
            tiny_bert, cola_dir, out, "--skip_untouched_embedding_rows", flag, "--save_strategy", "no"
        )
        results[flag] = run_cola.main(*parse_args(argv))
    assert results["true"]["eval_loss"] == pytest.approx(results["false"]["eval_loss"], rel=1e-3)
    assert results["true"]["train_loss"] == pytest.approx(results["false"]["train_loss"], rel=1e-3)
