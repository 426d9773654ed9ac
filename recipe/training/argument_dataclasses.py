"""The recipe's own argument dataclasses: `ModelArguments`, `DataArguments` and `RecipeArguments` (the
Trainer's are the stock `TrainingArguments`). Every field is a command-line flag and a `--config` YAML key;
each `__post_init__` refuses a bad value, naming the flag. Parsing lives in recipe/training/arguments.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recipe.training.download import COLA_DOWNLOAD_URL, COLA_SHA256
from recipe.training.splits import VALIDATION_STRATEGIES

DEFAULT_DATA_DIR = "data/cola_public"


class ConfigError(ValueError):
    """A config file or flag that cannot be used; the message names it and says what to do."""


@dataclass
class ModelArguments:
    """Which checkpoint to fine-tune, and how to load it."""

    model_name_or_path: str = field(
        default="bert-base-uncased",
        metadata={
            "help": "A Hugging Face Hub model id (needs a network) or a local folder saved by save_pretrained."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer id or folder, when it differs from --model_name_or_path."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})
    model_revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit id."})
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run custom modelling code shipped with a checkpoint. Off: only enable for code you trust."
        },
    )
    allow_pickle_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "Accept weights stored only as pickle (pytorch_model.bin). Off: weights load from "
            "safetensors, and a pickle-only checkpoint is refused (unpickling can run code)."
        },
    )
    classifier_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the new classification head (recipe/training/optim.py). Default: --learning_rate."
        },
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise learning-rate decay: each encoder layer trains at this factor times the rate of "
            "the one above, the embeddings at learning_rate * decay^(num_layers+1) (recipe/training/optim.py). 1.0: off."
        },
    )

    def __post_init__(self) -> None:
        if self.classifier_learning_rate is not None and self.classifier_learning_rate <= 0:
            raise ConfigError(
                f"--classifier_learning_rate must be positive; got {self.classifier_learning_rate}."
            )
        if not 0.0 < self.layerwise_lr_decay <= 1.0:
            raise ConfigError(f"--layerwise_lr_decay must be in (0, 1]; got {self.layerwise_lr_decay}.")


@dataclass
class DataArguments:
    """Where CoLA comes from and how it is turned into model inputs."""

    data_dir: str = field(
        default=DEFAULT_DATA_DIR,
        metadata={
            "help": "A CoLA release folder holding raw/in_domain_train.tsv, raw/in_domain_dev.tsv and "
            "(optionally) raw/out_of_domain_dev.tsv."
        },
    )
    max_seq_length: int = field(
        default=64,
        metadata={"help": "Longer sentences are truncated (the tutorial: 64; CoLA's longest is 47)."},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every sentence to max_seq_length (the tutorial's way, for static shapes). "
            "Off: pad each batch to its longest sentence, which does the same maths with less padding."
        },
    )
    validation_split: float = field(
        default=0.1,
        metadata={"help": "Share of in_domain_train held out, with the seed, for per-epoch validation."},
    )
    validation_split_seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the train/validation split (--validation_split). Default: --seed, as the "
            "tutorial does. Set it to keep one validation set while --seed varies (a search's best.yaml "
            "sets it to the split its trials were scored on)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (quick runs, debugging)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (datasets.map num_proc)."}
    )
    # Where else CoLA can come from, and how validation is chosen (recipe/training/data.py).
    validation_strategy: str = field(
        default="split",
        metadata={
            "help": "split: the tutorial's seeded split of train (--validation_split); dev: the official "
            "in-domain dev as validation, training on all of train; none: no validation (train on "
            "everything, for the final model; needs --eval_strategy no).",
            "choices": list(VALIDATION_STRATEGIES),
        },
    )
    stratify_validation: bool = field(
        default=False,
        metadata={"help": "With --validation_strategy split: keep the label balance in both parts."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Instead of --data_dir: a Hub dataset id (nyu-mll/glue, needs a network) or a local folder "
            "of a dataset with its schema (sentence, label, idx; test labels -1)."
        },
    )
    dataset_config_name: str | None = field(
        default="cola", metadata={"help": "The configuration of --dataset_name (GLUE: cola)."}
    )
    download: bool = field(
        default=False,
        metadata={
            "help": "When --data_dir holds no CoLA, download the release zip into --data_cache_dir "
            "(sha256-verified, reused on the next run) and use it."
        },
    )
    download_url: str = field(
        default=COLA_DOWNLOAD_URL, metadata={"help": "The CoLA release zip to download."}
    )
    download_sha256: str = field(default=COLA_SHA256, metadata={"help": "The sha256 the download must have."})
    data_cache_dir: str = field(
        default="data",
        metadata={"help": "Where downloads and extracted zips go (the download lands in <dir>/cola_public)."},
    )
    order_eval_by_length: bool = field(
        default=True,
        metadata={
            "help": "Evaluate and predict in batches sorted by length (less padding); metrics and the order "
            "of predictions are unchanged (recipe/training/eval_order.py)."
        },
    )
    annotations: str | None = field(
        default=None,
        metadata={
            "help": "CoLA's grammatical annotations (the folder with CoLA_grammatical_annotations_major_features.tsv "
            "/ _minor_features.tsv, the release zip, or a folder with in_domain_major_features.tsv ...): after "
            "evaluation, MCC per phenomenon on each dev split -> phenomena.csv/.md/.png and the model card "
            "(recipe/reports/phenomena.py). Checked before training."
        },
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < 3:
            raise ConfigError(
                f"--max_seq_length must be at least 3 ([CLS] word [SEP]); got {self.max_seq_length}."
            )
        if not 0.0 <= self.validation_split < 1.0:
            raise ConfigError(f"--validation_split must be in [0, 1); got {self.validation_split}.")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ConfigError(f"--max_train_samples must be positive; got {self.max_train_samples}.")
        if self.validation_strategy not in VALIDATION_STRATEGIES:
            raise ConfigError(
                f"--validation_strategy must be one of {', '.join(VALIDATION_STRATEGIES)}; "
                f"got '{self.validation_strategy}'."
            )
        if self.stratify_validation and self.validation_strategy != "split":
            raise ConfigError(
                "--stratify_validation applies to --validation_strategy split only; "
                f"got --validation_strategy {self.validation_strategy}."
            )
        if len(self.download_sha256) != 64 or any(
            c not in "0123456789abcdefABCDEF" for c in self.download_sha256
        ):
            raise ConfigError(f"--download_sha256 must be 64 hex digits; got '{self.download_sha256}'.")
        if not self.download_url.startswith(("https://", "http://", "file://")):
            raise ConfigError(
                f"--download_url must be an http(s):// or file:// URL; got '{self.download_url}'."
            )
        if self.dataset_name is not None and self.download:
            raise ConfigError(
                "--dataset_name and --download both choose where CoLA comes from; pass one of them."
            )
        if self.dataset_config_name == "":
            self.dataset_config_name = None


@dataclass
class RecipeArguments:
    """How a run behaves around the training loop (output folder, resuming, reports)."""

    # Where each effective setting came from (`parse_args`: default, recipe, machine, config, flag); not a
    # flag. Written to run_args.json and the model card; the reproduce command carries the non-defaults.
    setting_sources: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    # The machine the defaults were chosen for (`Hardware.describe()`), recorded with the run.
    machine: str = field(default="", init=False, repr=False)

    overwrite_output: bool = field(
        default=False,
        metadata={
            "help": "Replace a finished run in --output_dir. Without it, a folder holding a finished run "
            "and no checkpoint to resume is refused (transformers 5 removed overwrite_output_dir)."
        },
    )
    fallback_to_previous_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "When the last checkpoint in --output_dir is incomplete or truncated, rename it "
            "corrupt-checkpoint-N and resume from the previous valid one. Off: stop with an error naming it."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without a better validation MCC (--metric_for_best_model). "
            "Off by default; the run still ends with the best-MCC checkpoint."
        },
    )
    write_report: bool = field(
        default=True,
        metadata={
            "help": "After the run, write epochs.csv/epochs.md, learning_curve.png, test_mcc_by_batch.png, "
            "confusion_matrix*.png and a model card README.md to --output_dir, and print a summary."
        },
    )

    # `python run_cola.py search` (recipe/experiments/search.py): how many trials, and the space they are drawn from.
    n_trials: int = field(
        default=20,
        metadata={
            "help": "search: finished trials the study should hold. Run the same command again with a larger "
            "number to add trials to it (the study lives in OUTPUT_DIR/search/study.db)."
        },
    )
    search_learning_rate: list[float] = field(
        default_factory=lambda: [1e-5, 3e-4],
        metadata={"help": "search: learning rate range LOW HIGH, drawn on a log scale."},
    )
    search_num_train_epochs: list[int] = field(
        default_factory=lambda: [2, 3, 4, 5], metadata={"help": "search: epoch counts to choose from."}
    )
    search_warmup_ratio: list[float] = field(
        default_factory=lambda: [0.0, 0.2],
        metadata={"help": "search: warmup range LOW HIGH as a share of the training steps (below 1)."},
    )
    search_weight_decay: list[float] = field(
        default_factory=lambda: [0.0, 0.1], metadata={"help": "search: weight decay range LOW HIGH."}
    )
    search_batch_size: list[int] = field(
        default_factory=lambda: [16, 32],
        metadata={"help": "search: per-device train batch sizes to choose from."},
    )
    search_seed: list[int] = field(
        default_factory=lambda: [42, 43, 44],
        metadata={"help": "search: seeds to choose from (one value: the seed is fixed)."},
    )
    search_classifier_lr_ratio: list[float] = field(
        default_factory=list,
        metadata={
            "help": "search: head learning rate as a multiple of learning_rate, range LOW HIGH (log scale). "
            "Empty: not searched (--classifier_learning_rate applies)."
        },
    )
    search_layerwise_lr_decay: list[float] = field(
        default_factory=list,
        metadata={
            "help": "search: layer-wise learning-rate decay range LOW HIGH within (0, 1]. "
            "Empty: not searched (--layerwise_lr_decay applies)."
        },
    )

    global_train_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Examples per optimizer step over all processes. Set: per_device_train_batch_size "
            "becomes the most one device holds, and the per-device batch and gradient_accumulation_steps "
            "are derived from the number of processes, so results compare across launches. "
            "Unset: per_device_train_batch_size is used as given."
        },
    )
    model_license: str | None = field(
        default=None,
        metadata={
            "help": "The license of the fine-tuned model, written to the model card's metadata (a Hub "
            "license id such as apache-2.0 or mit; check the base model's license). Unset: no license line."
        },
    )

    def __post_init__(self) -> None:
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(
                f"--early_stopping_patience must be at least 1; got {self.early_stopping_patience}."
            )
