"""AdamW and clipping on the looked-up embedding rows only (recipe/embedding_rows.py) match the stock ones,
whether the table's gradient comes sparse (the Trainer's set-up) or dense."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from conftest import fast_args
from transformers import AutoModelForSequenceClassification, BertConfig, TrainingArguments

import run_cola
from recipe.arguments import parse_args
from recipe.embedding_rows import RowSparseAdamW
from recipe.trainer import CoLATrainer

VOCAB = 80


def tiny_model(seed: int = 0, sparse_gradient: bool = False) -> torch.nn.Module:
    """A 2-layer BERT; `sparse_gradient`: its word-embedding lookup gives a sparse gradient."""
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
    model = AutoModelForSequenceClassification.from_config(config).train()
    model.get_input_embeddings().sparse = sparse_gradient
    return model


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


@pytest.mark.parametrize("sparse_gradient", [True, False], ids=["sparse-gradient", "dense-gradient"])
@pytest.mark.parametrize(("max_norm", "micro"), [(0.05, 1), (None, 1), (0.05, 2), (100.0, 1)])
def test_matches_stock_adamw_and_clipping(max_norm: float | None, micro: int, sparse_gradient: bool) -> None:
    stock_model, sparse_model = tiny_model(), tiny_model(sparse_gradient=sparse_gradient)
    table = sparse_model.get_input_embeddings().weight
    initial = table.detach().clone()
    kwargs = {"lr": 1e-2, "weight_decay": 0.0, "fused": True}
    stock = torch.optim.AdamW(stock_model.parameters(), **kwargs)
    sparse = RowSparseAdamW(sparse_model.parameters(), table=table, **kwargs)
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
    assert sparse_norms == pytest.approx(stock_norms, rel=1e-5)
    sparse_model(**data[0][0]).loss.backward()
    assert table.grad.is_sparse == sparse_gradient  # the path under test is the one we meant
    sparse.zero_grad(set_to_none=True)
    for (name, a), (_, b) in zip(
        stock_model.named_parameters(), sparse_model.named_parameters(), strict=True
    ):
        # atol: the key biases' true gradient is 0 (softmax ignores a shift), so theirs is rounding noise
        # that AdamW scales up to steps of ~lr; a sparse gradient sums repeated rows in another order.
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
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
        return RowSparseAdamW(model.parameters(), table=table, lr=1e-2, weight_decay=0.0)

    data = batches(6)
    straight_model = tiny_model(sparse_gradient=True)
    straight = fresh(straight_model)
    clip = lambda opt, model: lambda n: opt.clip_grad_norm_(model.parameters(), n)  # noqa: E731
    train(straight_model, straight, data, 0.05, clip(straight, straight_model))

    first_model = tiny_model(sparse_gradient=True)
    first = fresh(first_model)
    train(first_model, first, data[:3], 0.05, clip(first, first_model))
    saved_state = copy.deepcopy(first.state_dict())
    resumed_model = copy.deepcopy(first_model)
    resumed = fresh(resumed_model)
    resumed.load_state_dict(saved_state)  # casts the row ids to float: the step must cope
    train(resumed_model, resumed, data[3:], 0.05, clip(resumed, resumed_model))
    for a, b in zip(straight_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_table_read_outside_the_lookup_is_stepped_on_every_row_it_touches() -> None:
    # Reading the weight outside the lookup makes the gradient dense (and every row of it non-zero).
    stock_model, model = tiny_model(), tiny_model(sparse_gradient=True)
    table = model.get_input_embeddings().weight
    optimizer = RowSparseAdamW(model.parameters(), table=table, lr=1e-2, weight_decay=0.0)
    stock = torch.optim.AdamW(stock_model.parameters(), lr=1e-2, weight_decay=0.0)
    for m, opt in ((stock_model, stock), (model, optimizer)):
        for step in batches(3):
            batch = step[0]
            weight = m.get_input_embeddings().weight
            loss = m(**batch).loss + 1e-3 * weight.sum()  # every row gets a gradient
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    assert len(optimizer.state[table]["rows"]) == VOCAB
    for a, b in zip(stock_model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)  # atol: see the test above


def test_a_step_reads_the_gradient_it_is_given_not_one_read_before() -> None:
    # Clipping reads the gradient's rows and keeps them for the step; a new backward must replace them.
    stock_model, model = tiny_model(), tiny_model(sparse_gradient=True)
    table = model.get_input_embeddings().weight
    optimizer = RowSparseAdamW(model.parameters(), table=table, lr=1e-2, weight_decay=0.0)
    stock = torch.optim.AdamW(stock_model.parameters(), lr=1e-2, weight_decay=0.0)
    first, second = (step[0] for step in batches(2))
    model(**first).loss.backward()
    optimizer.clip_grad_norm_(model.parameters(), 1e-3)
    optimizer.zero_grad(set_to_none=True)
    model(**second).loss.backward()
    optimizer.step()
    stock_model(**second).loss.backward()
    stock.step()
    for a, b in zip(stock_model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def make_trainer(tiny_bert, tmp_path, **arguments) -> CoLATrainer:
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **arguments)
    return CoLATrainer(model=model, args=args)


def test_the_trainer_uses_it_only_where_it_holds(tiny_bert, tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="recipe.embedding_rows"):
        used = make_trainer(tiny_bert, tmp_path)
        assert isinstance(used.create_optimizer(), RowSparseAdamW)
        assert used.model.get_input_embeddings().sparse  # the gradient the optimizer reads is sparse
        decayed_trainer = make_trainer(tiny_bert, tmp_path, weight_decay=0.01)
        decayed = decayed_trainer.create_optimizer()
        assert type(decayed) is torch.optim.AdamW
        assert not decayed_trainer.model.get_input_embeddings().sparse  # stock AdamW refuses sparse ones
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


def test_training_steps_on_sparse_gradients_and_leaves_the_embedding_as_it_came(tiny_bert, tmp_path) -> None:
    trainer = make_trainer(
        tiny_bert, tmp_path, max_steps=2, per_device_train_batch_size=2, save_strategy="no", report_to="none"
    )
    trainer.train_dataset = [{"input_ids": [2, 5 + i, 6, 3], "labels": i % 2} for i in range(4)]
    embedding = trainer.model.get_input_embeddings()
    layouts = []
    embedding.weight.register_hook(lambda grad: layouts.append(grad.is_sparse))
    trainer.train()
    assert layouts == [True, True]
    assert not embedding.sparse


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
