"""The recipe's Trainer: every place the recipe leaves the stock `transformers.Trainer`, on one screen.

Written against transformers 5.24 (pinned in pyproject.toml). Each override is a few lines with a one-line
why, and calls a named, tested function of another module. With the options at their defaults the model
trains as with the stock Trainer; what differs is the order batches come in (a resumable length grouping,
a deterministic length sort for evaluation), how files are written (atomically, without tokens) and, only
when asked for, the optimizer's parameter groups.

`build_trainer` is the one place a run's Trainer is put together: `run_cola.main`, the seeds command
(through main) and the search (recipe/experiments/search.py) all call it, so their data, collator, metrics, evaluation
order and optimizer options cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import datasets
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PredictionOutput

from recipe.runtime.hardware import build_data_collator
from recipe.runtime.io import save_metrics_atomically, save_state_atomically
from recipe.runtime.redaction import tokens_hidden
from recipe.training.arguments import ConfigError, DataArguments, ModelArguments, training_settings_error
from recipe.training.eval_order import LengthOrderedSampler, length_order, model_input_name, restore_order
from recipe.training.metrics import compute_cola_metrics
from recipe.training.model import match_tokenizer_to_model
from recipe.training.optim import param_group_optimizer, uses_param_groups
from recipe.training.sampling import length_grouped_sampler, seeded
from recipe.training.splits import TEST, TRAIN, VALIDATION

# A search trial's optimizer options: trial -> {"classifier_learning_rate": ..., "layerwise_lr_decay": ...}.
TrialOptimizerOptions = Callable[[Any], dict[str, float]]


class CoLATrainer(Trainer):
    """`transformers.Trainer` with the recipe's data order, atomic files and optional parameter groups.

    Args:
        classifier_learning_rate: the new head's learning rate; None = learning_rate (recipe/training/optim.py).
        layerwise_lr_decay: learning-rate factor per layer down the encoder; 1.0 = off (recipe/training/optim.py).
        order_eval_by_length: evaluate and predict in batches sorted by length (recipe/training/eval_order.py).
        trial_optimizer_options: in a search, the two options above drawn for the running trial.
        *args, **kwargs: as for `transformers.Trainer`.
    """

    def __init__(
        self,
        *args: Any,
        classifier_learning_rate: float | None = None,
        layerwise_lr_decay: float = 1.0,
        order_eval_by_length: bool = True,
        trial_optimizer_options: TrialOptimizerOptions | None = None,
        **kwargs: Any,
    ) -> None:
        self.classifier_learning_rate = classifier_learning_rate
        self.layerwise_lr_decay = layerwise_lr_decay
        self.order_eval_by_length = order_eval_by_length
        self.trial_optimizer_options = trial_optimizer_options
        super().__init__(*args, **kwargs)

    def orders_eval(self) -> bool:
        """Sorted evaluation on one process; with several, each rank's shard would lose the order."""
        return self.order_eval_by_length and self.args.world_size <= 1

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        # Why: the stock length-grouped sampler shuffles from the global RNG, so a mid-epoch resume
        # reorders the epoch (recipe/training/sampling.py; tests/test_faults.py). transformers 5.24.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        sampler = length_grouped_sampler(self.args, dataset, model_input_name(self.processing_class))
        return (
            sampler if sampler is not None else seeded(super()._get_train_sampler(train_dataset), self.args)
        )

    def _get_eval_sampler(self, eval_dataset: torch.utils.data.Dataset) -> torch.utils.data.Sampler | None:
        # Why: sorted by length, each evaluation batch carries little padding (recipe/training/eval_order.py;
        # tests/test_speed.py). transformers 5.24.
        if not self.orders_eval() or eval_dataset is None:
            return super()._get_eval_sampler(eval_dataset)
        return LengthOrderedSampler(length_order(eval_dataset, model_input_name(self.processing_class)))

    def predict(
        self,
        test_dataset: torch.utils.data.Dataset,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = TEST.metric_prefix,
    ) -> PredictionOutput:
        """`Trainer.predict`, with predictions and labels back in `test_dataset`'s row order."""
        output = super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        if not self.orders_eval():
            return output
        order = length_order(test_dataset, model_input_name(self.processing_class))
        return PredictionOutput(
            predictions=restore_order(output.predictions, order),
            label_ids=restore_order(output.label_ids, order),
            metrics=output.metrics,
        )

    def create_optimizer(self, model: torch.nn.Module | None = None) -> Any:
        """The stock optimizer; over per-layer parameter groups when the head rate or decay is set."""
        # In a search, `_trial` is set by Trainer._hp_search_setup before the optimizer is built (5.24).
        trial = getattr(self, "_trial", None)
        if self.optimizer is None and self.trial_optimizer_options is not None and trial is not None:
            for name, value in self.trial_optimizer_options(trial).items():
                setattr(self, name, value)
        if self.optimizer is not None or not uses_param_groups(
            self.classifier_learning_rate, self.layerwise_lr_decay
        ):
            return super().create_optimizer(model)
        self.optimizer = param_group_optimizer(
            self,
            self.model if model is None else model,
            self.args,
            self.classifier_learning_rate,
            self.layerwise_lr_decay,
        )
        return self.optimizer

    def save_metrics(self, split: str, metrics: dict[str, Any], combined: bool = True) -> None:
        """`Trainer.save_metrics`, atomically: a kill mid-write must not leave a truncated results file."""
        if self.is_world_process_zero():
            save_metrics_atomically(self.args.output_dir, split, metrics, combined)

    def save_state(self) -> None:
        """`Trainer.save_state`, atomically (the same JSON as `TrainerState.save_to_json`)."""
        if self.is_world_process_zero():
            save_state_atomically(self.args.output_dir, self.state)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # Why: the stock _save pickles self.args into training_args.bin, --hub_token included. 5.24.
        with tokens_hidden(self.args):
            super()._save(output_dir, state_dict=state_dict)


def model_matched_to(
    model_init: Callable[[Any], PreTrainedModel], tokenizer: PreTrainedTokenizerBase, trial: Any = None
) -> PreTrainedModel:
    """`model_init(trial)` with the tokenizer matched to it (`recipe.training.model.match_tokenizer_to_model`)."""
    model = model_init(trial)
    match_tokenizer_to_model(tokenizer, model)
    return model


def build_trainer(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    tokenizer: PreTrainedTokenizerBase,
    tokenized: datasets.DatasetDict,
    *,
    model: PreTrainedModel | None = None,
    model_init: Callable[[Any], PreTrainedModel] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    trial_optimizer_options: TrialOptimizerOptions | None = None,
) -> CoLATrainer:
    """The run's Trainer: its data, collator, MCC metrics, evaluation order and optimizer options.

    Args:
        model: the model to train; or `model_init` (a search builds one per trial).
        tokenized: the tokenized splits, keyed by the registry: train is trained on when `do_train`,
            validation evaluated.
        callbacks: added to the Trainer's own (reports, best-model selection, signals).

    Raises:
        ConfigError: settings the Trainer or accelerate refuse (one line naming the flag).
    """
    if model is not None:
        match_tokenizer_to_model(tokenizer, model)
    if model_init is not None:
        model_init = functools.partial(model_matched_to, model_init, tokenizer)
    try:
        return CoLATrainer(
            # Optimizer parameter groups (recipe/training/optim.py): the stock optimizer unless these are set.
            classifier_learning_rate=model_args.classifier_learning_rate,
            layerwise_lr_decay=model_args.layerwise_lr_decay,
            # Sorted-by-length evaluation batches, predictions in the dataset's order.
            order_eval_by_length=data_args.order_eval_by_length,
            trial_optimizer_options=trial_optimizer_options,
            model=model,
            model_init=model_init,
            args=training_args,
            train_dataset=tokenized[TRAIN.name]
            if training_args.do_train and TRAIN.name in tokenized
            else None,
            eval_dataset=tokenized.get(VALIDATION.name),
            processing_class=tokenizer,
            # Pads each batch to its longest sentence (a no-op when pad_to_max_length already padded).
            data_collator=build_data_collator(tokenizer, training_args.device.type),
            compute_metrics=compute_cola_metrics,
            callbacks=list(callbacks),
        )
    except ValueError as err:  # accelerate refusing a precision or launch combination
        if isinstance(err, ConfigError):
            raise
        raise training_settings_error(err, set(training_args.to_dict())) from err
