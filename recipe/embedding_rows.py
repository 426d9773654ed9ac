"""Sparse word-embedding gradients; clip and step only the rows the batches looked up (CPU, weight decay 0).

The word-embedding table is half of a small BERT's parameters (30522 x 384 of all-MiniLM-L6-v2's 22.7 M),
yet a batch of 32 CoLA sentences looks up about 300 of its rows. Its stock gradient is dense all the same:
at every step the backward pass writes a zero table and adds the batch's rows into it, gradient clipping
reads the whole table, and AdamW reads and writes the table and its two moment tables. On a 2-core CPU that
is a tenth of a training step, spent on zeros. torch has the two halves of a fix, but not together:
`nn.Embedding(sparse=True)` gives a gradient holding only the looked-up rows, and `torch.optim.SparseAdam`
steps such gradients, but with lazily decaying moments (a different optimizer, not AdamW).

`RowSparseAdamW` steps AdamW exactly on the looked-up rows, for a reason that holds only without weight
decay on the table:
- a row no batch has looked up yet has a zero gradient at every step so far, so its exp_avg and exp_avg_sq
  are exactly 0 and AdamW moves it by lr * 0 / (0 + eps) = 0;
- a row looked up this step has a gradient; one looked up before but not now has a zero gradient and
  non-zero moments, so it still moves: AdamW runs on every row ever looked up (the "active" rows), with
  the same fused kernel and hyperparameters as the other parameters;
- rows not looked up this step hold zeros in the gradient, which add nothing to its norm nor change when
  scaled, so clipping needs only this step's rows.
Weight decay on the table would shrink every row at every step, so with it the stock AdamW steps it whole.
The active rows' moments are kept as [active rows, dim] tables (in the optimizer state, with the row ids).
Results match the stock AdamW up to float rounding (the norm is summed in another order), which
tests/test_embedding_rows.py checks against `torch.optim.AdamW` + `clip_grad_norm_` step by step.

The table's gradient may come sparse (the Trainer mixin turns on `sparse` on the embedding module) or
dense (code that also reads the weight directly, or sparse off, as under torch.compile): a dense one is
reduced to its non-zero rows, which is as exact (a looked-up row whose gradient is exactly zero steps like
one not looked up), only slower.

`EmbeddingRowsMixin` swaps `RowSparseAdamW` in for the Trainer's AdamW, makes the embedding's gradient
sparse and routes clipping through the optimizer, only where it holds: a single CPU process, `--optim
adamw_torch(_fused)`, no weight decay on the table, an untied table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
import torch.optim.adam as torch_adam
from torch import nn
from transformers import Trainer

logger = logging.getLogger(__name__)

STOCK_ADAMW = ("adamw_torch", "adamw_torch_fused")


def group_holding(param_groups: list[dict], param: nn.Parameter | None) -> dict | None:
    """The parameter group that holds `param`, or None."""
    return next((g for g in param_groups if any(p is param for p in g["params"])), None)


def table_group_problem(group: dict | None) -> str | None:
    """Why AdamW on these group settings can't skip the table's untouched rows; None when it can."""
    if group is None:
        return "the optimizer does not hold the table"
    if group["weight_decay"] != 0:
        return f"the table has weight decay ({group['weight_decay']}), which moves every row at every step"
    if group.get("amsgrad") or group.get("maximize"):
        return "AdamW's amsgrad or maximize is on"
    return None


class RowSparseAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW` that clips and steps one embedding table only on the rows its gradient holds.

    Args:
        params: parameters or parameter groups, as for AdamW; `table` must be in one of them, in a group
            with weight_decay 0, amsgrad and maximize off.
        table: the word-embedding weight. Its gradient may be sparse (`nn.Embedding(sparse=True)`: only
            the looked-up rows) or dense (reduced to its non-zero rows at each step).
        **kwargs: AdamW's keyword arguments.
    """

    def __init__(self, params: Iterable, table: nn.Parameter, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.table = table
        problem = table_group_problem(self.table_group())
        if problem is not None:
            raise ValueError(f"RowSparseAdamW cannot step the embedding table: {problem}")
        # This step's (gradient, row ids, gradient rows), read once from the table's gradient.
        self._step_rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._buffers: tuple[torch.Tensor, ...] | None = None  # see _row_tables

    def table_group(self) -> dict | None:
        """The table's parameter group, looked up each time: load_state_dict replaces the group dicts."""
        return group_holding(self.param_groups, self.table)

    def _this_step(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The row ids and rows of the table's current gradient; None when it has none.

        A sparse gradient lists a row once per lookup: coalescing sums the repeats (and is kept as the
        gradient, its values a view, so clipping them in place clips the gradient). A dense gradient is
        read whole once to find its non-zero rows.
        """
        grad = self.table.grad
        if grad is None:
            return None
        if self._step_rows is None or self._step_rows[0] is not grad:
            if grad.is_sparse:
                grad = self.table.grad = grad.coalesce()
                ids, rows = grad.indices()[0], grad.values()
            else:
                ids = grad.ne(0).any(dim=1).nonzero().squeeze(1)
                rows = grad.index_select(0, ids)
            self._step_rows = (grad, ids, rows)
        return self._step_rows[1:]

    @torch.no_grad()
    def clip_grad_norm_(self, parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
        """`torch.nn.utils.clip_grad_norm_(parameters, max_norm)`, reading only the table's gradient rows."""
        parameters = [p for p in parameters if p.grad is not None]
        step = self._this_step()
        if step is None or not any(p is self.table for p in parameters):
            return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        ids, table_rows = step
        others = [p for p in parameters if p is not self.table]
        total = torch.nn.utils.get_total_norm([p.grad for p in others] + [table_rows], 2.0)
        # The factor clip_grads_with_norm_ multiplies by. When the norm is within max_norm it is exactly 1
        # and multiplying changes no bit, so the gradients are left unread (about half the steps on CoLA).
        factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        if factor < 1.0:
            torch.nn.utils.clip_grads_with_norm_(others, max_norm, total)
            table_rows.mul_(factor)  # the table's other rows are zero
            if not self.table.grad.is_sparse:  # a sparse gradient's values are table_rows themselves
                self.table.grad.index_copy_(0, ids, table_rows)
        return total

    @torch.no_grad()
    def step(self, closure=None):
        step = self._this_step()
        if step is None:
            return super().step(closure)
        self._step_table_rows(*step)
        grad, self.table.grad = self.table.grad, None  # AdamW skips a parameter without a gradient
        try:
            loss = super().step(closure)
        finally:
            self.table.grad, self._step_rows = grad, None
        return loss

    def _step_table_rows(self, ids: torch.Tensor, table_rows: torch.Tensor) -> None:
        """AdamW on every row ever looked up; this step's gradient on `ids`, zero on the others."""
        state, group, table = self.state[self.table], self.table_group(), self.table
        if "rows" not in state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["rows"] = torch.empty(0, dtype=torch.long, device=table.device)
            state["exp_avg_rows"] = table.new_zeros((0, table.shape[1]))
            state["exp_avg_sq_rows"] = table.new_zeros((0, table.shape[1]))
        rows = state["rows"] = state["rows"].long()  # Optimizer.load_state_dict casts it to the table's dtype
        slot = torch.full((table.shape[0],), -1, dtype=torch.long, device=table.device)
        slot[rows] = torch.arange(len(rows), device=table.device)
        new = ids[slot[ids] < 0]
        if len(new):  # first lookups: zero moments, as AdamW's state for a row that never had a gradient
            slot[new] = torch.arange(len(rows), len(rows) + len(new), device=table.device)
            rows = state["rows"] = torch.cat([rows, new])
        exp_avg, exp_avg_sq, grad = self._row_tables(state, len(rows))
        grad.index_copy_(0, slot[ids], table_rows)
        values = table.detach().index_select(0, rows)
        beta1, beta2 = group["betas"]
        torch_adam.adam(
            [values],
            [grad],
            [exp_avg],
            [exp_avg_sq],
            [],
            [state["step"]],
            foreach=group["foreach"],
            fused=group["fused"],
            decoupled_weight_decay=True,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=0.0,
            eps=group["eps"],
            maximize=False,
        )
        table.detach().index_copy_(0, rows, values)
        grad.index_fill_(0, slot[ids], 0.0)  # the gradient buffer is all zeros again for the next step

    def _row_tables(self, state: dict, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """exp_avg, exp_avg_sq and a zero gradient for the first `count` active rows.

        They are views of buffers with room to grow (doubling), so a step that meets new rows does not copy
        the moments, and the gradient buffer is kept zero instead of allocated and zeroed at every step. The
        state holds the views; after load_state_dict (other tensors) the buffers are rebuilt from them.
        """
        buffers = self._buffers
        if (
            buffers is None
            or buffers[0].data_ptr() != state["exp_avg_rows"].data_ptr()
            or len(buffers[0]) < count
        ):
            known = len(state["exp_avg_rows"])
            capacity = max(2 * count, 1024)
            buffers = tuple(self.table.new_zeros((capacity, self.table.shape[1])) for _ in range(3))
            buffers[0][:known] = state["exp_avg_rows"]
            buffers[1][:known] = state["exp_avg_sq_rows"]
            self._buffers = buffers
        state["exp_avg_rows"], state["exp_avg_sq_rows"] = buffers[0][:count], buffers[1][:count]
        return state["exp_avg_rows"], state["exp_avg_sq_rows"], buffers[2][:count]


def row_sparse_unsupported_reason(trainer: Trainer, model: nn.Module) -> str | None:
    """Why the Trainer's optimizer can't be a RowSparseAdamW for `model`; None when it can."""
    args = trainer.args
    if args.device.type != "cpu" or args.world_size != 1:
        return "it is used on a single CPU process only"
    if args.optim not in STOCK_ADAMW:
        return f"--optim {getattr(args.optim, 'value', args.optim)} is not {' / '.join(STOCK_ADAMW)}"
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not isinstance(embedding, nn.Embedding) or not embedding.weight.requires_grad:
        return "the model has no trainable nn.Embedding input table"
    if embedding.max_norm is not None:
        return "the input embedding uses max_norm (it rewrites the rows it looks up)"
    shared = sum(p is embedding.weight for _, p in model.named_parameters(remove_duplicate=False))
    if shared != 1:
        return "the input embedding table is tied to another module"
    return None


class EmbeddingRowsMixin(Trainer):
    """A Trainer whose stock AdamW steps the word-embedding table on its looked-up rows only.

    Args:
        skip_untouched_embedding_rows: on by default; off = the stock optimizer.
        *args, **kwargs: as for `transformers.Trainer`.
    """

    def __init__(self, *args, skip_untouched_embedding_rows: bool = True, **kwargs) -> None:
        self.skip_untouched_embedding_rows = skip_untouched_embedding_rows
        self._sparse_embedding: tuple[nn.Embedding, bool] | None = None  # (module, its `sparse` before)
        super().__init__(*args, **kwargs)

    def train(self, *args, **kwargs):
        """`Trainer.train`; the embedding module leaves it as it came (`sparse` is set for training only)."""
        try:
            return super().train(*args, **kwargs)
        finally:
            if self._sparse_embedding is not None:
                embedding, sparse = self._sparse_embedding
                embedding.sparse, self._sparse_embedding = sparse, None

    def create_optimizer(self, model: nn.Module | None = None):
        """The stock optimizer; an AdamW turned into a RowSparseAdamW with the same groups when it holds."""
        if self.optimizer is not None:
            return super().create_optimizer(model)
        optimizer = super().create_optimizer(model)
        opt_model = self.model if model is None else model
        reason = None if self.skip_untouched_embedding_rows else "--skip_untouched_embedding_rows false"
        reason = reason or row_sparse_unsupported_reason(self, opt_model)
        table = None if reason else opt_model.get_input_embeddings().weight
        if reason is None and type(optimizer) is not torch.optim.AdamW:
            reason = f"the optimizer is {type(optimizer).__name__}, not torch's AdamW"
        # The same conditions RowSparseAdamW checks, so a group it would refuse falls back here instead.
        reason = reason or table_group_problem(group_holding(optimizer.param_groups, table))
        if reason is not None:
            logger.info("AdamW steps the whole word-embedding table: %s.", reason)
            return optimizer
        defaults = {
            k: v for k, v in optimizer.defaults.items() if k != "decoupled_weight_decay"
        }  # AdamW's own
        self.optimizer = RowSparseAdamW(optimizer.param_groups, table=table, **defaults)
        # A sparse gradient holds the looked-up rows only: the backward pass no longer writes a zero
        # table, and the optimizer needn't search a dense one for its non-zero rows. Not under
        # torch.compile, which breaks its graph at a sparse-gradient lookup; the dense gradient is as exact.
        embedding = opt_model.get_input_embeddings()
        if not self.args.torch_compile:
            self._sparse_embedding = (embedding, embedding.sparse)
            embedding.sparse = True
        logger.info(
            "Sparse word-embedding gradients; AdamW and gradient clipping skip the rows no batch has looked up "
            "(same result: recipe/embedding_rows.py; --skip_untouched_embedding_rows false turns it off)."
        )
        return self.optimizer

    def _clip_grad_norm(self, model: nn.Module):
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)  # under accelerate's wrapper
        if isinstance(optimizer, RowSparseAdamW):
            return optimizer.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
        return super()._clip_grad_norm(model)
