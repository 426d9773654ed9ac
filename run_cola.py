"""Fine-tune a BERT-family model on CoLA with the Hugging Face Trainer; score it by MCC.

    python run_cola.py --config configs/bert-base-uncased.yaml --data_dir data/cola_public
    python run_cola.py --model_name_or_path /path/to/checkpoint --data_dir /path/to/cola_public
    accelerate launch run_cola.py --config configs/bert-base-uncased.yaml
    make train MODEL=bert-base-uncased DATA_DIR=data/cola_public ARGS="--num_train_epochs 3"

Steps, top to bottom: log -> data -> tokenizer/model -> trainer -> train -> evaluate -> save.
Flags: `python run_cola.py --help`. Tests call `main()` directly.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

import datasets
import numpy as np
import transformers
from transformers import TrainingArguments, set_seed
from transformers.trainer_utils import PredictionOutput

from recipe.analysis import load_annotations_for_run, write_error_analysis
from recipe.arguments import ConfigError, DataArguments, ModelArguments, RecipeArguments, parse_args
from recipe.best_model import configure_best_model
from recipe.checkpoints import resolve_resume_checkpoint
from recipe.compare import compare_cli
from recipe.data import DataError, check_splits_for_run, load_cola_splits, tokenize_cola
from recipe.distributed import apply_global_batch_size, launch_summary
from recipe.hardware import build_data_collator, keep_freed_memory_in_process
from recipe.metrics import compute_cola_metrics
from recipe.model import CheckpointError, load_model, load_tokenizer, match_tokenizer_to_model
from recipe.predict import predict_cli
from recipe.redaction import install_log_redaction, secret_values
from recipe.reporting import EpochTimerCallback, predicted_labels, write_run_report
from recipe.search import search_cli
from recipe.seeds import seeds_cli
from recipe.signals import GracefulStopCallback, TrainingInterrupted, raise_if_interrupted
from recipe.submission import predict_test_submission
from recipe.trainer import CoLATrainer

logger = logging.getLogger("run_cola")

TEST_SPLITS = ("in_domain_dev", "out_of_domain_dev", "dev")


def setup_logging(training_args: TrainingArguments) -> None:
    """Log to stderr at the level the Trainer uses on this process (quiet on non-main ranks)."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stderr)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    logging.getLogger("recipe").setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def main(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments | None = None,
) -> dict[str, float]:
    """Run the recipe; returns every metric written to `all_results.json`."""
    recipe_args = recipe_args or RecipeArguments()
    setup_logging(training_args)
    apply_global_batch_size(training_args, recipe_args)  # before the Trainer reads the batch size
    # CPU: reuse freed memory instead of page-faulting the embedding gradient in at every step.
    keep_freed_memory_in_process(training_args.device.type)
    # Tokens (--hub_token, $HF_TOKEN...) are masked in every log line from here on.
    install_log_redaction(secret_values((model_args, data_args, training_args, recipe_args)))
    logger.info("Training arguments: %s", training_args.to_json_string())
    # Seed before the model is built so the new classifier head's initialisation follows the seed too.
    set_seed(training_args.seed)

    raw = load_cola_splits(data_args, seed=training_args.seed)
    check_splits_for_run(raw, training_args)
    annotations = load_annotations_for_run(data_args, raw, training_args)  # a bad file stops us here
    tokenizer = load_tokenizer(model_args)
    model = load_model(model_args)
    match_tokenizer_to_model(tokenizer, model)
    tokenized = tokenize_cola(raw, tokenizer, data_args)
    # Decided once data and model have loaded, so a bad flag never costs the previous run's folder.
    resume_from = resolve_resume_checkpoint(training_args, recipe_args, model_args.allow_pickle_checkpoint)
    callbacks = [
        EpochTimerCallback(),
        *configure_best_model(training_args, recipe_args, "validation" in tokenized),
    ]

    # SIGTERM / Ctrl-C during training: save a checkpoint at the next step boundary, then stop.
    stop_on_signal = GracefulStopCallback()
    trainer = CoLATrainer(
        # Optimizer parameter groups (recipe/optim.py): the stock optimizer unless these are set.
        classifier_learning_rate=model_args.classifier_learning_rate,
        layerwise_lr_decay=model_args.layerwise_lr_decay,
        # AdamW and clipping skip embedding rows no batch has looked up (recipe/embedding_rows.py).
        skip_untouched_embedding_rows=model_args.skip_untouched_embedding_rows,
        # Sorted-by-length evaluation batches, predictions in the dataset's order (recipe/eval_order.py).
        order_eval_by_length=data_args.order_eval_by_length,
        eval_max_tokens=data_args.eval_max_tokens,  # batches cut by padded tokens, not sentences
        model=model,
        args=training_args,
        train_dataset=tokenized["train"] if training_args.do_train else None,
        eval_dataset=tokenized.get("validation"),
        processing_class=tokenizer,
        # Pads each batch to its longest sentence (a no-op when pad_to_max_length already padded).
        data_collator=build_data_collator(tokenizer, training_args.device.type),
        compute_metrics=compute_cola_metrics,
        callbacks=[*callbacks, stop_on_signal],
    )

    results: dict[str, float] = {}
    split_predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    split_outputs: dict[str, PredictionOutput] = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume_from)
        raise_if_interrupted(stop_on_signal)
        trainer.save_model()  # the model and the tokenizer (processing_class), reloadable by from_pretrained
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        results.update(train_result.metrics)

    if training_args.do_eval:
        splits = (["validation"] if "validation" in tokenized else []) + [
            s for s in TEST_SPLITS if s in tokenized
        ]
        for split in splits:
            prefix = "eval" if split == "validation" else split
            # predict = evaluate's loop and metrics, plus the predictions the report plots (no second pass).
            output = trainer.predict(tokenized[split], metric_key_prefix=prefix)
            trainer.log(output.metrics)  # as evaluate() does: log history, TensorBoard
            split_predictions[split] = predicted_labels(output)
            split_outputs[split] = output
            metrics = {**output.metrics, f"{prefix}_samples": len(tokenized[split])}
            trainer.log_metrics(prefix, metrics)
            trainer.save_metrics(prefix, metrics)
            results.update(metrics)
    launch = launch_summary(training_args)  # world size and global batch, into all_results.json
    trainer.save_metrics("launch", launch)
    results.update(launch)

    if training_args.do_predict:  # the unlabeled test set -> CoLA.tsv (GLUE submission format)
        predict_test_submission(trainer, tokenized["test"], raw["test"], training_args.output_dir)
    if trainer.is_world_process_zero():  # <split>_predictions.tsv, phenomena.*, the card's error section
        write_error_analysis(raw, split_outputs, annotations, data_args, training_args)
    if recipe_args.write_report:
        write_run_report(
            trainer, results, model_args, data_args, training_args, recipe_args, split_predictions
        )
    return results


# `python run_cola.py NAME ...` runs a subcommand instead of training: NAME -> its entry point, which
# takes the remaining arguments and returns an exit status.
SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "predict": predict_cli,
    "seeds": functools.partial(seeds_cli, train=main),
    "search": search_cli,  # hyperparameter search (recipe/search.py)
    "compare": compare_cli,  # runs side by side, per split and phenomenon (recipe/compare.py)
}


def cli(argv: list[str] | None = None) -> int:
    """Parse and run; a known user error prints one clear message instead of a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return SUBCOMMANDS[argv[0]](argv[1:])
        main(*parse_args(argv))
    except (ConfigError, DataError, CheckpointError) as err:
        print(f"run_cola.py: error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stopped:
        print(f"run_cola.py: {stopped}", file=sys.stderr)
        return stopped.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(cli())
