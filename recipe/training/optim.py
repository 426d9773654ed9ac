"""Optimizer parameter groups for small and sentence-embedding checkpoints: a separate learning rate for
the new classification head, and layer-wise learning-rate decay (LLRD) through the encoder.

Depth of a parameter in an encoder with L layers (L = config.num_hidden_layers):
    embeddings (any name with "embeddings" in the base model)   depth 0
    layer i (a name with ".layer.i." / ".layers.i.")             depth i + 1
    anything else in the base model (pooler, final norm)         depth L + 1
Its learning rate is `learning_rate * layerwise_lr_decay ** (L + 1 - depth)`: the top of the encoder
trains at the full rate, each layer below at `decay` times the one above, the embeddings at
`learning_rate * decay ** (L + 1)` (ULMFiT's discriminative fine-tuning; Sun et al. 2019, "How to
Fine-Tune BERT for Text Classification"; ELECTRA's layer-wise decay).
The classification head (every parameter outside `model.base_model_prefix`, e.g. `classifier.*`) is new,
so it gets `classifier_learning_rate` (default: `learning_rate`) and no decay.

With both options off the recipe's Trainer (recipe/training/trainer.py) builds the stock optimizer
(`Trainer.create_optimizer`); with either on, `param_group_optimizer` below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_optimizer import is_optimizer_factory

from recipe.training.arguments import ConfigError

LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


@dataclass(frozen=True)
class ParamGroupSpec:
    """Where a parameter sits: in the new head or the encoder, and at which depth of the encoder."""

    is_head: bool
    depth: int


def count_encoder_layers(model: nn.Module) -> int:
    """Number of transformer layers: `config.num_hidden_layers`, else the layer indices in the names."""
    config_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if isinstance(config_layers, int) and config_layers > 0:
        return config_layers
    indices = [int(m.group(1)) for name, _ in model.named_parameters() if (m := LAYER_INDEX.search(name))]
    return max(indices) + 1 if indices else 0


def locate_parameter(name: str, base_prefix: str, num_layers: int) -> ParamGroupSpec:
    """Place one named parameter (see the module docstring for the depths)."""
    if base_prefix and not name.startswith(base_prefix + "."):
        return ParamGroupSpec(is_head=True, depth=num_layers + 1)
    if "embeddings" in name:
        return ParamGroupSpec(is_head=False, depth=0)
    match = LAYER_INDEX.search(name)
    if match:
        return ParamGroupSpec(is_head=False, depth=int(match.group(1)) + 1)
    return ParamGroupSpec(is_head=False, depth=num_layers + 1)


def parameter_learning_rate(
    spec: ParamGroupSpec,
    learning_rate: float,
    num_layers: int,
    classifier_learning_rate: float | None,
    layerwise_lr_decay: float,
) -> float:
    """The learning rate of a parameter placed by `locate_parameter`."""
    if spec.is_head:
        return learning_rate if classifier_learning_rate is None else classifier_learning_rate
    return learning_rate * layerwise_lr_decay ** (num_layers + 1 - spec.depth)


def build_param_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    decay_parameter_names: set[str] | list[str],
    classifier_learning_rate: float | None = None,
    layerwise_lr_decay: float = 1.0,
) -> list[dict]:
    """Optimizer parameter groups, one per (learning rate, weight decay) pair.

    Weight decay goes only to `decay_parameter_names` (the Trainer excludes biases and LayerNorm weights).
    Each group carries a `group_name` ("head" or "encoder.depthN", with "/no_decay") so logs and tests can
    tell them apart. The group with the base learning rate comes first: the Trainer logs the first group's
    rate as `learning_rate`.

    Returns:
        Dicts with `params`, `lr`, `weight_decay` and `group_name`, for any torch optimizer.
    """
    decay_names = set(decay_parameter_names)
    base_prefix = getattr(model, "base_model_prefix", "") or ""
    if base_prefix and not hasattr(model, base_prefix):
        base_prefix = ""  # a bare encoder (no head): every parameter belongs to the encoder
    num_layers = count_encoder_layers(model)
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        spec = locate_parameter(name, base_prefix, num_layers)
        lr = parameter_learning_rate(
            spec, learning_rate, num_layers, classifier_learning_rate, layerwise_lr_decay
        )
        decays = name in decay_names
        place = "head" if spec.is_head else f"encoder.depth{spec.depth}"
        group_name = place if decays else f"{place}/no_decay"
        group = groups.setdefault(
            group_name,
            {
                "params": [],
                "lr": lr,
                "weight_decay": weight_decay if decays else 0.0,
                "group_name": group_name,
            },
        )
        group["params"].append(param)
    # Stable sort: the base-rate groups first, then the order the model defines its parameters in.
    return sorted(groups.values(), key=lambda group: group["lr"] != learning_rate)


def uses_param_groups(classifier_learning_rate: float | None, layerwise_lr_decay: float) -> bool:
    """Whether either option departs from the stock single learning rate."""
    return classifier_learning_rate is not None or layerwise_lr_decay != 1.0


def param_group_optimizer(
    trainer: Trainer,
    model: nn.Module,
    args: TrainingArguments,
    classifier_learning_rate: float | None,
    layerwise_lr_decay: float,
) -> Any:
    """The stock optimizer (class and kwargs from `--optim`), over this recipe's parameter groups.

    Args:
        trainer: the Trainer whose `get_optimizer_cls_and_kwargs` / `get_decay_parameter_names` choose the
            optimizer class and which parameters decay, as for the stock optimizer.
        model: the model to optimise.
        args: the run's TrainingArguments (learning_rate, weight_decay, optim).
        classifier_learning_rate: the head's rate; None = learning_rate.
        layerwise_lr_decay: factor per layer going down the encoder; 1.0 = off.

    Raises:
        ConfigError: an `--optim` that builds its own parameter groups.
    """
    optimizer_cls, optimizer_kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
    # Some --optim choices build their own parameter list (GaLore, LOMO, layer-wise 8-bit, Muon
    # factories); per-group learning rates would be silently dropped there, so refuse instead.
    builds_own_groups = {"params", "model", "optimizer_dict"} & set(optimizer_kwargs)
    if is_optimizer_factory(optimizer_cls) or builds_own_groups:
        raise ConfigError(
            f"--optim {args.optim} builds its own parameter groups, so --classifier_learning_rate "
            "and --layerwise_lr_decay cannot be applied. Use --optim adamw_torch (the default), or drop "
            "those two options."
        )
    groups = build_param_groups(
        model,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        decay_parameter_names=trainer.get_decay_parameter_names(model),
        classifier_learning_rate=classifier_learning_rate,
        layerwise_lr_decay=layerwise_lr_decay,
    )
    return optimizer_cls(groups, **optimizer_kwargs)
