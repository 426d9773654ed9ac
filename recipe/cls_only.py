"""Run the last encoder layer for the [CLS] token only: the classification head reads nothing else.

A sequence-classification head of the BERT family reads one position of the last layer's output: BERT's
pooler takes `hidden_states[:, 0]`, the RoBERTa / XLM-R / CamemBERT / ELECTRA heads take
`features[:, 0, :]`. The last layer's attention still needs keys and values of every token, but its query,
attention output, feed-forward block and their dropouts matter only at position 0. Computing them for
that one position gives the same logits (up to float rounding) for about (10/12) x (1 - 1/L) of the last
layer's matrix work: 13% of all of MiniLM-L6's encoder FLOPs at CoLA's ~11 tokens, 7% of BERT-base's, in
training and in evaluation alike.

No library does this (transformers runs every layer at every position, as a general-purpose encoder
must), so it is written here: one replacement `forward` set on the last layer *instance*. Nothing is
saved with it (checkpoints stay stock models) and a model it cannot be shown to suit runs unchanged:
1. only architectures whose layers and heads are the ones described above (SUPPORTED_MODEL_TYPES), with
   eager or SDPA attention, as encoders (no decoder, no cross-attention, no hidden states or attentions
   returned, whose last entry would now hold one position);
2. a self-check on a small padded batch compares the logits with and without it before it is kept.
What changes: dropout draws fewer random numbers in the last layer, so a training run follows a different
(equally valid) random path than the stock model's under the same seed; `last_hidden_state` of the
patched base model holds only position 0. `--last_layer_cls_only false` turns it off.
"""

from __future__ import annotations

import logging
import sys
import types

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

logger = logging.getLogger(__name__)

# Model types (transformers 5) whose encoder layers are BERT's (attention.self.{query,key,value},
# attention.output, feed_forward_chunk) and whose sequence-classification head reads position 0 only.
SUPPORTED_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
SUPPORTED_ATTENTION = frozenset({"eager", "sdpa"})


def first_token_layer_forward(
    self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs
) -> torch.Tensor:
    """BertLayer.forward with the query side computed for position 0 only; returns [batch, 1, hidden]."""
    attention = self.attention.self
    batch, length, _ = hidden_states.shape
    head_size = attention.attention_head_size
    first = hidden_states[:, :1]
    query = attention.query(first).view(batch, 1, -1, head_size).transpose(1, 2)
    key = attention.key(hidden_states).view(batch, length, -1, head_size).transpose(1, 2)
    value = attention.value(hidden_states).view(batch, length, -1, head_size).transpose(1, 2)
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :1, :]  # the mask row of the one query position
    # The same choice the stock layer makes: SDPA from the registry, else the modelling file's eager function.
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(
        attention.config._attn_implementation, sys.modules[type(attention).__module__].eager_attention_forward
    )
    context, _ = attend(
        attention,
        query,
        key,
        value,
        attention_mask,
        dropout=attention.dropout.p if attention.training else 0.0,
        scaling=attention.scaling,
    )
    attention_output = self.attention.output(context.reshape(batch, 1, -1).contiguous(), first)
    return self.feed_forward_chunk(attention_output)


def unsupported_reason(model: PreTrainedModel) -> str | None:
    """Why the last layer of `model` can't be run for [CLS] only; None when it can."""
    config = model.config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type '{config.model_type}' is not one of {sorted(SUPPORTED_MODEL_TYPES)}"
    if config._attn_implementation not in SUPPORTED_ATTENTION:
        return f"attention implementation '{config._attn_implementation}' (supported: eager, sdpa)"
    if config.is_decoder or getattr(config, "add_cross_attention", False):
        return "the model is configured as a decoder"
    if config.output_hidden_states or config.output_attentions:
        return "the config asks for every layer's hidden states or attentions"
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    last = layers[-1] if isinstance(layers, nn.ModuleList) and len(layers) else None
    attention = getattr(getattr(last, "attention", None), "self", None)
    attention_parts = ("query", "key", "value", "attention_head_size", "scaling")
    if (
        attention is None
        or not all(hasattr(attention, name) for name in attention_parts)
        or not hasattr(last, "feed_forward_chunk")
        or not hasattr(last.attention, "output")
    ):
        return "its last encoder layer is not laid out like BERT's"
    if not hasattr(sys.modules[type(attention).__module__], "eager_attention_forward"):
        return "its modelling file has no eager_attention_forward"
    return None


def self_check_batch(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """Two rows of random token ids, the second padded, from a private generator (global RNG untouched)."""
    generator = torch.Generator().manual_seed(0)
    low = min(5, model.config.vocab_size - 1)
    input_ids = torch.randint(low, model.config.vocab_size, (2, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 4:] = 0
    device = next(model.parameters()).device
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def apply_last_layer_cls_only(model: PreTrainedModel) -> bool:
    """Make `model`'s last encoder layer compute position 0 only, if shown to give the same logits.

    Returns:
        Whether the model now runs that way; when not, the model is left exactly as it was and the log says why.
    """
    reason = unsupported_reason(model)
    if reason is not None:
        logger.info("Last layer runs every token (--last_layer_cls_only has no effect): %s.", reason)
        return False
    last = model.base_model.encoder.layer[-1]
    batch = self_check_batch(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        last.forward = types.MethodType(first_token_layer_forward, last)
        got = model(**batch).logits
    model.train(was_training)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        del last.forward  # back to the class's forward
        logger.warning(
            "Last layer runs every token: computing it for [CLS] only changed the logits on a test batch "
            "(max difference %.3g), so it is left off.",
            (got - expected).abs().max().item(),
        )
        return False
    logger.info(
        "Last encoder layer computes only the [CLS] position, the only one the classification head reads "
        "(same logits, less work; --last_layer_cls_only false turns it off)."
    )
    return True
