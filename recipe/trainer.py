"""The recipe's Trainer: `transformers.Trainer` with each of the recipe's additions mixed in.

Results files are written atomically and with no token on disk (`AtomicSaveMixin`, below).

`Trainer.save_metrics` / `save_state` open the target file for writing and dump JSON into it, so a kill
or a full disk mid-write leaves a truncated `all_results.json` (and a truncated file that a later
`save_metrics` must read back and merge). `AtomicSaveMixin` writes the same JSON through
`recipe.io.write_json_atomic` (temp file + os.replace), and pickles `training_args.bin` with the token
fields blanked. It is a mixin so that another Trainer subclass can combine it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from recipe.embedding_rows import EmbeddingRowsMixin
from recipe.eval_order import LengthOrderedTrainer
from recipe.io import write_json_atomic, write_text_atomic
from recipe.optim import ParamGroupTrainer
from recipe.redaction import tokens_hidden
from recipe.sampling import ResumableLengthGroupingMixin


class AtomicSaveMixin:
    """Overrides of `Trainer` methods that write files, each writing atomically and without secrets."""

    def save_metrics(self, split: str, metrics: dict[str, Any], combined: bool = True) -> None:
        """`Trainer.save_metrics`, atomically: `{split}_results.json` and the merged `all_results.json`."""
        if not self.is_world_process_zero():
            return
        write_json_atomic(os.path.join(self.args.output_dir, f"{split}_results.json"), metrics)
        if combined:
            path = os.path.join(self.args.output_dir, "all_results.json")
            all_metrics: dict[str, Any] = {}
            if os.path.exists(path):
                with open(path, encoding="utf-8") as handle:
                    all_metrics = json.load(handle)
            all_metrics.update(metrics)
            write_json_atomic(path, all_metrics)

    def save_state(self) -> None:
        """`Trainer.save_state`, atomically (same JSON as `TrainerState.save_to_json`)."""
        if not self.is_world_process_zero():
            return
        text = json.dumps(dataclasses.asdict(self.state), indent=2, sort_keys=True) + "\n"
        write_text_atomic(os.path.join(self.args.output_dir, "trainer_state.json"), text)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # The stock _save ends with torch.save(self.args, "training_args.bin"), token included.
        with tokens_hidden(self.args):
            super()._save(output_dir, state_dict=state_dict)


class CoLATrainer(
    AtomicSaveMixin, ResumableLengthGroupingMixin, LengthOrderedTrainer, EmbeddingRowsMixin, ParamGroupTrainer
):
    """The Trainer `run_cola.py` uses; with the options at their defaults it trains like the stock one.

    Each addition is its own class in its own module, read and tested alone; this one only composes them
    (their `__init__`s pop their own keyword arguments):
    - `AtomicSaveMixin` (here): atomic results files, token-free `training_args.bin`;
    - `ResumableLengthGroupingMixin` (recipe/sampling.py): length-grouped batches a resume reproduces;
    - `LengthOrderedTrainer` (recipe/eval_order.py): evaluation sorted by length, predictions in order;
    - `EmbeddingRowsMixin` (recipe/embedding_rows.py): AdamW and clipping skip never-looked-up embedding rows;
    - `ParamGroupTrainer` (recipe/optim.py): head learning rate and layer-wise learning-rate decay.
    """
