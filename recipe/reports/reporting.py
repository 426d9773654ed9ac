"""What a run leaves for people to read, written from the results `main()` holds in memory.

`write_run_report` writes to `output_dir`, on the main process:

- `run_args.json`: every effective setting with its source, the reproducing command and the versions
  (recipe/reports/run_args.py);
- `epochs.csv` / `epochs.md` and `learning_curve.png`: the per-epoch table and curves
  (recipe/reports/epochs.py);
- `test_mcc_by_batch.png` and `confusion_matrix.png`: the test splits' charts (recipe/reports/plots.py);
- `README.md`: the model card (recipe/reports/card.py), with the error-analysis section passed in;

then prints the per-epoch table and a summary line (MCC per split, the files written).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from transformers import Trainer, TrainingArguments

from recipe.reports.card import CardInputs, model_card
from recipe.reports.epochs import epoch_rows, plot_learning_curve, write_epoch_table
from recipe.reports.plots import write_test_split_plots
from recipe.reports.run_args import write_run_args
from recipe.training import splits
from recipe.training.arguments import DataArguments, ModelArguments, RecipeArguments
from recipe.training.evaluation import SplitResult

logger = logging.getLogger(__name__)


def shown_test_results(evaluated: Mapping[str, SplitResult]) -> list[SplitResult]:
    """The scored splits the card, the charts and the summary line show: each one evaluated that is not a
    union of others (dev, the union of in- and out-of-domain dev, is left out even on its own)."""
    return [
        evaluated[split.name] for split in splits.scored() if not split.union_of and split.name in evaluated
    ]


def shown_results(evaluated: Mapping[str, SplitResult]) -> list[SplitResult]:
    """Validation (when evaluated), then the test splits shown."""
    validation = evaluated.get(splits.VALIDATION.name)
    return ([validation] if validation is not None else []) + shown_test_results(evaluated)


def summary_line(shown: Sequence[SplitResult], output_dir: Path, written: Sequence[Path]) -> str:
    """One line: MCC per split and where the files went."""
    scores = ", ".join(
        f"{result.split.name} {mcc:.4f}"
        for result in shown
        if (mcc := result.metric("matthews_correlation")) is not None
    )
    names = ", ".join(path.name for path in written)
    return f"MCC: {scores or 'not evaluated'} | written to {output_dir}: {names}"


def write_epoch_report(trainer: Trainer, output_dir: Path) -> tuple[list[dict], str, list[Path]]:
    """epochs.csv, epochs.md and learning_curve.png; returns the rows, the Markdown table and the paths."""
    rows = epoch_rows(trainer.state.log_history)
    if not rows:
        logger.info("No training epochs were logged: epochs.csv and learning_curve.png are not written.")
        return rows, "", []
    table = write_epoch_table(rows, output_dir)
    plot_learning_curve(rows, output_dir / "learning_curve.png")
    return (
        rows,
        table,
        [output_dir / "epochs.csv", output_dir / "epochs.md", output_dir / "learning_curve.png"],
    )


def write_run_report(
    trainer: Trainer,
    results: dict[str, float],
    evaluated: Mapping[str, SplitResult],
    error_analysis: str,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> list[Path]:
    """Write the report files into `output_dir`, print the epoch table and the summary line.

    `results`: every metric of the run; `evaluated`: split name -> its result (recipe/training/evaluation.py);
    `error_analysis`: the card's "What the model gets wrong" section (recipe/reports/analysis.py). Call it on
    the main process only. Returns the paths written.
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = [write_run_args(model_args, data_args, training_args, recipe_args)]
    rows, table, epoch_files = write_epoch_report(trainer, output_dir)
    written += epoch_files
    written += write_test_split_plots(shown_test_results(evaluated), output_dir)

    shown = shown_results(evaluated)
    card = CardInputs(
        model_args, data_args, training_args, recipe_args, results, shown, rows, trainer.state, error_analysis
    )
    model_card(card).save(output_dir / "README.md")
    written.append(output_dir / "README.md")

    # Printed, not logged: the default log level (warning) would hide what every run should show.
    if table:
        print(f"\nTraining, per epoch ({output_dir / 'epochs.md'}):\n{table}\n")
    print(summary_line(shown, output_dir, written))
    return written
