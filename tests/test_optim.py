"""Optimizer parameter groups (recipe/training/optim.py): head learning rate and layer-wise decay."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_args
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

import run_cola
from recipe.runtime.signals import GracefulStopCallback
from recipe.training.arguments import ConfigError, parse_args
from recipe.training.optim import build_param_groups
from recipe.training.trainer import CoLATrainer

LR = 1e-3


def make_trainer(tiny_bert, tmp_path, **options) -> CoLATrainer:
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=LR, weight_decay=0.01, use_cpu=True)
    return CoLATrainer(model=model, args=args, **options)


def lr_by_name(trainer: Trainer) -> dict[str, tuple[float, float]]:
    """Parameter name -> (lr, weight_decay) of the group that holds it in the trainer's optimizer."""
    group_of = {
        id(p): (group["lr"], group["weight_decay"])
        for group in trainer.optimizer.param_groups
        for p in group["params"]
    }
    return {name: group_of[id(p)] for name, p in trainer.model.named_parameters()}


def test_options_off_give_the_stock_optimizer(tiny_bert, tmp_path):
    ours = make_trainer(tiny_bert, tmp_path).create_optimizer()
    stock_trainer = Trainer(
        model=AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2),
        args=TrainingArguments(output_dir=str(tmp_path), learning_rate=LR, weight_decay=0.01, use_cpu=True),
    )
    stock = stock_trainer.create_optimizer()
    assert type(ours) is type(stock)
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in ours.param_groups] == [
        (g["lr"], g["weight_decay"], len(g["params"])) for g in stock.param_groups
    ]


def test_layerwise_decay_and_head_rate(tiny_bert, tmp_path):
    decay, head_lr = 0.5, 5e-3
    trainer = make_trainer(tiny_bert, tmp_path, classifier_learning_rate=head_lr, layerwise_lr_decay=decay)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)  # the stock --optim (adamw_torch)
    lrs = lr_by_name(trainer)
    num_layers = 2  # the tiny BERT
    # Exact: the same expression (rate * decay ** k) as recipe/training/optim.py, so the same float.
    assert lrs["classifier.weight"] == (head_lr, 0.01)
    assert lrs["classifier.bias"] == (head_lr, 0.0)
    assert lrs["bert.pooler.dense.weight"] == (LR, 0.01)  # above the top layer: the full rate
    assert lrs["bert.encoder.layer.1.attention.self.query.weight"] == (LR * decay, 0.01)
    assert lrs["bert.encoder.layer.0.attention.self.query.weight"] == (LR * decay**2, 0.01)
    assert lrs["bert.encoder.layer.0.output.LayerNorm.weight"] == (LR * decay**2, 0.0)
    embedding_lr = LR * decay ** (num_layers + 1)
    assert lrs["bert.embeddings.word_embeddings.weight"] == (embedding_lr, 0.01)
    assert lrs["bert.embeddings.LayerNorm.bias"] == (embedding_lr, 0.0)
    # Every trainable parameter is in exactly one group.
    grouped = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(trainer.model.parameters()))
    assert optimizer.param_groups[0]["lr"] == LR  # the logged learning_rate is the base one


def test_head_rate_alone_leaves_the_encoder_at_the_base_rate(tiny_bert, tmp_path):
    trainer = make_trainer(tiny_bert, tmp_path, classifier_learning_rate=1e-2)
    trainer.create_optimizer()
    lrs = lr_by_name(trainer)
    assert {lr for name, (lr, _) in lrs.items() if name.startswith("classifier.")} == {1e-2}
    assert {lr for name, (lr, _) in lrs.items() if name.startswith("bert.")} == {LR}


def test_build_param_groups_skips_frozen_parameters(tiny_bert):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model.bert.embeddings.requires_grad_(False)
    groups = build_param_groups(model, LR, 0.0, decay_parameter_names=[], layerwise_lr_decay=0.9)
    grouped = {id(p) for group in groups for p in group["params"]}
    assert not any(id(p) in grouped for p in model.bert.embeddings.parameters())
    assert all("/no_decay" in group["group_name"] for group in groups)


def test_param_group_options_are_validated_and_train_end_to_end(tiny_bert, cola_dir, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="layerwise_lr_decay"):
        parse_args(fast_args(tiny_bert, cola_dir, tmp_path / "x", "--layerwise_lr_decay", "1.5"))
    with pytest.raises(ConfigError, match="classifier_learning_rate"):
        parse_args(fast_args(tiny_bert, cola_dir, tmp_path / "x", "--classifier_learning_rate", "0"))

    # The optimizer main() trained with, as the Trainer hands it to the callbacks at the end of training.
    seen = {}
    unprobed = GracefulStopCallback.on_train_end

    def keep_optimizer(self, args, state, control, **kwargs):
        seen.update(optimizer=kwargs["optimizer"], model=kwargs["model"])
        return unprobed(self, args, state, control, **kwargs)

    monkeypatch.setattr(GracefulStopCallback, "on_train_end", keep_optimizer)
    out = tmp_path / "out"
    argv = fast_args(tiny_bert, cola_dir, out, "--save_strategy", "no", "--num_train_epochs", "1")
    argv += ["--classifier_learning_rate", "3e-3", "--layerwise_lr_decay", "0.8", "--weight_decay", "0.01"]
    run_cola.main(*parse_args(argv))
    group_of = {id(p): group for group in seen["optimizer"].param_groups for p in group["params"]}
    # initial_lr: the rate each group started from (set by the scheduler); exact, the same product as optim.py.
    start = {name: group_of[id(p)]["initial_lr"] for name, p in seen["model"].named_parameters()}
    assert start["classifier.weight"] == start["classifier.bias"] == 3e-3
    assert start["bert.pooler.dense.weight"] == 1e-3
    assert start["bert.encoder.layer.1.output.dense.weight"] == 1e-3 * 0.8
    assert start["bert.encoder.layer.0.output.dense.weight"] == 1e-3 * 0.8**2
    assert start["bert.embeddings.word_embeddings.weight"] == 1e-3 * 0.8**3
    # Every group followed one schedule: the same fraction of its starting rate at the end; relative
    # 1e-12: one float division per group.
    fractions = {group["lr"] / group["initial_lr"] for group in seen["optimizer"].param_groups}
    assert max(fractions) - min(fractions) <= 1e-12 * max(fractions)
    assert seen["optimizer"].param_groups[0]["initial_lr"] == 1e-3  # the logged learning_rate is the base one


def test_an_optimizer_that_builds_its_own_groups_is_refused(tiny_bert, tmp_path, monkeypatch):
    trainer = make_trainer(tiny_bert, tmp_path, layerwise_lr_decay=0.9)

    # What --optim galore_adamw returns (its own `params`), without needing the galore package.
    def own_groups(args, model):
        return torch.optim.AdamW, {"lr": args.learning_rate, "params": list(model.parameters())}

    monkeypatch.setattr(trainer, "get_optimizer_cls_and_kwargs", own_groups)
    with pytest.raises(ConfigError, match="--optim"):
        trainer.create_optimizer()
