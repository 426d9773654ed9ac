"""Fine-tune a BERT-family model on CoLA with the Hugging Face Trainer; score it by MCC.

    python run_cola.py --config configs/bert-base-uncased.yaml --data_dir data/cola_public
    python run_cola.py --model_name_or_path /path/to/checkpoint --data_dir /path/to/cola_public
    accelerate launch run_cola.py --config configs/bert-base-uncased.yaml
    make train MODEL=bert-base-uncased DATA_DIR=data/cola_public ARGS="--num_train_epochs 3"

Steps, top to bottom: log -> data -> tokenizer/model -> trainer -> train -> evaluate -> reports -> upload.
Flags: `python run_cola.py --help`. Tests call `main()` directly.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

from transformers import TrainingArguments, set_seed

from recipe.experiments.compare import compare_cli
from recipe.experiments.search import search_cli
from recipe.experiments.seeds import seeds_cli
from recipe.reports.analysis import load_annotations_for_run, write_error_analysis
from recipe.reports.epochs import EpochTimerCallback
from recipe.reports.reporting import write_run_report
from recipe.runtime.distributed import apply_global_batch_size, launch_summary
from recipe.runtime.env_report import env_cli
from recipe.runtime.logs import setup_logging
from recipe.runtime.network import check_network
from recipe.runtime.signals import GracefulStopCallback, TrainingInterrupted, raise_if_interrupted
from recipe.serving.export import export_cli
from recipe.serving.hub import HubPushError, defer_push_to_end, push_output_folder
from recipe.serving.predict import predict_cli
from recipe.serving.submission import predict_test_submission
from recipe.training import splits
from recipe.training.arguments import ConfigError, DataArguments, ModelArguments, RecipeArguments, parse_args
from recipe.training.best_model import configure_best_model
from recipe.training.checkpoints import resolve_resume_checkpoint
from recipe.training.data import DataError, check_splits_for_run, load_cola_splits
from recipe.training.evaluation import evaluate_splits
from recipe.training.model import (
    CheckpointError,
    check_max_seq_length,
    load_model,
    load_tokenizer,
    match_tokenizer_to_model,
)
from recipe.training.run_settings import RunSettingsCallback, result_settings
from recipe.training.tokenization import count_truncated, tokenize_cola
from recipe.training.trainer import build_trainer

logger = logging.getLogger("run_cola")


def main(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments | None = None,
) -> dict[str, float]:
    """Run the recipe; returns every metric written to `all_results.json`."""
    recipe_args = recipe_args or RecipeArguments()
    # Tokens (--hub_token, $HF_TOKEN...) are masked in every log line from here on.
    setup_logging(training_args, (model_args, data_args, training_args, recipe_args))
    check_network(model_args, data_args)  # without a network: one message with the offline commands, at once
    apply_global_batch_size(training_args, recipe_args)  # before the Trainer reads the batch size
    logger.info("Training arguments: %s", training_args.to_json_string())
    # --push_to_hub: the Trainer gets push_to_hub=False (no push at every save); one upload at the end.
    hub_target = defer_push_to_end(training_args)
    # Seed before the model is built so the new classifier head's initialisation follows the seed too.
    set_seed(training_args.seed)

    check_max_seq_length(model_args, data_args.max_seq_length)  # from the model's config, before the data
    raw = load_cola_splits(data_args, seed=training_args.seed)
    check_splits_for_run(raw, training_args)
    annotations = load_annotations_for_run(data_args, raw, training_args)  # a bad file stops us here
    tokenizer = load_tokenizer(model_args)
    model = load_model(model_args)
    match_tokenizer_to_model(tokenizer, model)  # before tokenizing: no token_type_ids for models without them
    tokenized = tokenize_cola(raw, tokenizer, data_args)
    truncated = count_truncated(raw, tokenizer, data_args.max_seq_length)  # logged; in the results and card
    # Recorded in every checkpoint; a resume from a run started with other settings is refused. Decided
    # once data and model have loaded, so a bad flag never costs the previous run's folder.
    settings = result_settings(model_args, data_args, training_args, recipe_args)
    resume_from = resolve_resume_checkpoint(
        training_args, recipe_args, model_args.allow_pickle_checkpoint, settings
    )
    # SIGTERM / Ctrl-C during training: save a checkpoint at the next step boundary, then stop.
    stop_on_signal = GracefulStopCallback()
    callbacks = [
        EpochTimerCallback(),
        RunSettingsCallback(settings),
        *configure_best_model(training_args, recipe_args, splits.VALIDATION.name in tokenized),
        stop_on_signal,
    ]
    trainer = build_trainer(
        model_args, data_args, training_args, tokenizer, tokenized, model=model, callbacks=callbacks
    )

    results: dict[str, float] = dict(truncated)
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume_from)
        raise_if_interrupted(stop_on_signal)
        trainer.save_model()  # the model and the tokenizer (processing_class), reloadable by from_pretrained
        trainer.log_metrics(splits.TRAIN.metric_prefix, train_result.metrics)
        trainer.save_metrics(splits.TRAIN.metric_prefix, train_result.metrics)
        trainer.save_state()
        results.update(train_result.metrics)

    # Validation, then each test split (recipe/training/splits.py): one result per split, kept in memory.
    evaluated = evaluate_splits(trainer, tokenized) if training_args.do_eval else {}
    for result in evaluated.values():
        results.update(result.metrics)
    launch = launch_summary(training_args)  # world size and global batch, into all_results.json
    trainer.save_metrics("launch", launch)
    results.update(launch)

    if training_args.do_predict:  # the unlabeled test set -> CoLA.tsv (GLUE submission format)
        test = splits.TEST.name
        predict_test_submission(trainer, tokenized[test], raw[test], training_args.output_dir)
    if trainer.is_world_process_zero():
        # <split>_predictions.tsv, phenomena.*; returns the card's "What the model gets wrong" section.
        error_analysis = write_error_analysis(raw, evaluated, annotations, data_args, training_args)
        if recipe_args.write_report:  # epochs, plots, model card, summary line
            write_run_report(
                trainer, results, evaluated, error_analysis, model_args, data_args, training_args, recipe_args
            )

    # Everything is written: upload the folder once (recipe/serving/hub.py). A failure raises HubPushError, which
    # leaves the run complete on disk; cli() prints it and exits with its exit_code (3).
    if hub_target is not None and trainer.is_world_process_zero():
        push_output_folder(hub_target, training_args.output_dir)
    return results


# `python run_cola.py NAME ...` runs a subcommand instead of training: NAME -> its entry point, which
# takes the remaining arguments and returns an exit status.
SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "predict": predict_cli,
    "seeds": functools.partial(seeds_cli, train=main),
    "search": search_cli,  # hyperparameter search (recipe/experiments/search.py)
    "env": env_cli,  # the machine, the library versions and the defaults chosen here (bug reports)
    "compare": compare_cli,  # runs side by side, per split and phenomenon (recipe/experiments/compare.py)
    "export": export_cli,  # ONNX and int8, the MCC re-checked (recipe/serving/export.py)
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
    except HubPushError as failed:
        print(f"run_cola.py: {failed}", file=sys.stderr)
        return failed.exit_code
    except TrainingInterrupted as stopped:
        print(f"run_cola.py: {stopped}", file=sys.stderr)
        return stopped.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(cli())
