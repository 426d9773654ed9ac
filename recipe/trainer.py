"""The recipe's Trainer: `transformers.Trainer` with each of the recipe's additions mixed in.

Each addition is its own subclass in its own module, so it can be read and tested alone; this class
only composes them (cooperative `__init__`s pop their own keyword arguments):
- `LengthOrderedTrainer` (recipe/eval_order.py): evaluation batches sorted by length, predictions in order;
- `ParamGroupTrainer` (recipe/optim.py): head learning rate and layer-wise learning-rate decay.
"""

from __future__ import annotations

from recipe.eval_order import LengthOrderedTrainer
from recipe.optim import ParamGroupTrainer


class CoLATrainer(LengthOrderedTrainer, ParamGroupTrainer):
    """The Trainer `run_cola.py` uses; with the options at their defaults it trains like the stock one."""
