"""CoLA data from any of its usual shapes -> one DatasetDict of the registered splits.

Sources, chosen by what the user gives (`resolve_data_source`):
- the release folder (`cola_public/raw/*.tsv`), or its zip (extracted into `--data_cache_dir`);
- the GLUE folder (`glue_data/CoLA/`: train.tsv, dev.tsv mixing in- and out-of-domain, unlabeled test.tsv);
- a `datasets` dataset with the `nyu-mll/glue` cola schema (sentence, label, idx; test labels -1), by Hub
  id or local folder (`--dataset_name`);
- the release zip downloaded on demand (`--download`).

The splits (names, release files, roles) are described once, in recipe/training/splits.py; the files are
read and checked line by line in recipe/training/cola_tsv.py, tokenized in recipe/training/tokenization.py.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import zipfile
from dataclasses import dataclass
from pathlib import Path

import datasets
from transformers import TrainingArguments

from recipe.runtime.distributed import main_process_first
from recipe.training.arguments import ConfigError, DataArguments
from recipe.training.cola_tsv import LABEL_NAMES, NO_LABEL, DataError, read_cola_tsv, read_glue_test_tsv
from recipe.training.download import (
    COLA_DOWNLOAD_URL,
    COLA_SHA256,
    DownloadError,
    fetch_cola_release,
    sha256_of,
)
from recipe.training.download import extract_release_zip as extract_zip_into
from recipe.training.splits import (
    DEV,
    IN_DOMAIN_DEV,
    OUT_OF_DOMAIN_DEV,
    TEST,
    TRAIN,
    VALIDATION,
    Split,
    by_name,
    hub_splits,
    in_order,
    release_files,
    split_named,
)

logger = logging.getLogger(__name__)

# The GLUE benchmark's copy (glue_data/CoLA/): the same 4-column rows; dev.tsv = in-domain + out-of-domain dev.
GLUE_TRAIN_FILE = "train.tsv"
GLUE_DEV_FILE = "dev.tsv"
GLUE_TEST_FILE = "test.tsv"
# The Hub dataset's schema (nyu-mll/glue, config cola); its splits map to ours in recipe/training/splits.py.
HUB_COLUMNS = ("sentence", "label", "idx")


@dataclass(frozen=True)
class DataSource:
    """Where the data comes from: `layout` is release, glue or hub; `location` a folder, id or path."""

    layout: str
    location: str


def missing_data_message(data_dir: Path, missing: list[str]) -> str:
    """Explain which layouts were expected, what was found, and where CoLA comes from."""
    if data_dir.is_dir():
        entries = sorted(path.name + ("/" if path.is_dir() else "") for path in data_dir.iterdir())
        found = (
            f"it holds: {', '.join(entries[:12]) + (' ...' if len(entries) > 12 else '')}"
            if entries
            else "it is empty"
        )
    else:
        found = "the folder does not exist"
    required = release_files(required_only=True)
    optional = [file for name, file in release_files().items() if name not in required]
    release_layout = ", ".join(f"{data_dir}/{file}" for file in required.values())
    if optional:
        release_layout += f" and optionally {', '.join(f'{data_dir}/{file}' for file in optional)}"
    return (
        f"CoLA data not found in '{data_dir}' ({found}): missing {', '.join(missing)}.\n"
        f"Expected one of: the official release layout ({release_layout}); the GLUE "
        f"layout ({data_dir}/train.tsv, {data_dir}/dev.tsv, optionally {data_dir}/test.tsv); or the "
        "release zip itself (--data_dir /path/to/cola_public_1.1.zip).\n"
        f"Get it with --download (fetches {COLA_DOWNLOAD_URL} into --data_cache_dir), "
        "or pass --data_dir /path/to/cola_public for a copy you already have, "
        "or --dataset_name nyu-mll/glue (needs a network) or a local copy of that dataset."
    )


def resolve_data_source(data_args: DataArguments) -> DataSource:
    """Decide the layout from the files (not a flag); extract a zip or download when that is the way.

    Raises:
        DataError: nothing usable at --data_dir (the message lists the layouts and what was found), or the
            download/zip failed.
    """
    if data_args.dataset_name is not None:
        return DataSource("hub", data_args.dataset_name)
    data_dir = Path(data_args.data_dir)
    cache_dir = Path(data_args.data_cache_dir)
    try:
        if data_dir.is_file():
            if not zipfile.is_zipfile(data_dir):
                raise DataError(
                    f"--data_dir {data_dir} is a file but not a zip; pass the release folder, the GLUE CoLA "
                    "folder, or the release zip (cola_public_1.1.zip)."
                )
            return DataSource("release", str(extract_release_zip(data_dir, cache_dir)))
        if (data_dir / "raw").is_dir():
            required = release_files(required_only=True).values()
            missing = [name for name in required if not (data_dir / name).is_file()]
            if missing:
                raise DataError(missing_data_message(data_dir, missing))
            return DataSource("release", str(data_dir))
        if (data_dir / GLUE_TRAIN_FILE).is_file() or (data_dir / GLUE_DEV_FILE).is_file():
            missing = [name for name in (GLUE_TRAIN_FILE, GLUE_DEV_FILE) if not (data_dir / name).is_file()]
            if missing:
                raise DataError(
                    f"'{data_dir}' looks like the GLUE CoLA layout but {', '.join(missing)} is missing; "
                    "it needs train.tsv and dev.tsv (test.tsv is optional)."
                )
            return DataSource("glue", str(data_dir))
        if data_args.download:
            release = fetch_cola_release(data_args.download_url, data_args.download_sha256, cache_dir)
            return DataSource("release", str(release))
    except DownloadError as err:
        raise DataError(str(err)) from err
    raise DataError(missing_data_message(data_dir, list(release_files(required_only=True).values())))


def extract_release_zip(zip_path: Path, cache_dir: Path) -> Path:
    """Extract a user's release zip into `cache_dir/extracted/<name>-<sha256 prefix>/` (reused if there)."""
    digest = sha256_of(zip_path)
    if digest == COLA_SHA256:
        logger.info("%s is the official CoLA v1.1 release (sha256 verified).", zip_path)
    else:
        logger.warning(
            "%s is not the official CoLA v1.1 zip (sha256 %s); using it as given.", zip_path, digest
        )
    return extract_zip_into(zip_path, cache_dir / "extracted" / f"{zip_path.stem}-{digest[:12]}")


def read_split_file(path: Path, split: Split) -> datasets.Dataset:
    """One split's file: the 4-column CoLA TSV, or GLUE's `index<TAB>sentence` for an unlabeled split."""
    return read_cola_tsv(path) if split.labeled else read_glue_test_tsv(path)


def add_unions(splits: dict[str, datasets.Dataset]) -> dict[str, datasets.Dataset]:
    """`splits` plus each registered union whose parts are all there (dev = in- + out-of-domain dev)."""
    splits = dict(splits)
    for split in by_name().values():
        if split.union_of and split.name not in splits and all(part in splits for part in split.union_of):
            splits[split.name] = datasets.concatenate_datasets([splits[part] for part in split.union_of])
    return splits


def load_release_folder(folder: Path) -> dict[str, datasets.Dataset]:
    """Every registered split whose release file is in `folder` (train and in-domain dev must be; the
    others are loaded when present), and the unions of those."""
    required = release_files(required_only=True)
    splits = {}
    for name, file in release_files().items():
        if (folder / file).is_file():
            splits[name] = read_split_file(folder / file, split_named(name))
        elif name in required:
            raise DataError(missing_data_message(folder, [file]))
        else:
            logger.info("No %s at %s; that test set is skipped.", name, folder / file)
    return add_unions(splits)


def split_dev_by_source(
    dev: datasets.Dataset, train_sources: set[str]
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split GLUE's dev.tsv into in-domain rows (a source that also occurs in train) and the rest.

    CoLA's in-domain sets come from the same 17 sources as the training set; the out-of-domain dev set
    comes from 6 sources that train never uses. So the source column alone tells them apart.
    """
    sources = dev["source"]
    in_domain = [i for i, source in enumerate(sources) if source in train_sources]
    out_of_domain = [i for i, source in enumerate(sources) if source not in train_sources]
    return dev.select(in_domain), dev.select(out_of_domain)


def load_glue_folder(folder: Path) -> dict[str, datasets.Dataset]:
    """GLUE's CoLA folder: train, dev (all of dev.tsv) split by source into in/out-of-domain, and test."""
    train = read_cola_tsv(folder / GLUE_TRAIN_FILE)
    dev = read_cola_tsv(folder / GLUE_DEV_FILE)
    in_domain, out_of_domain = split_dev_by_source(dev, set(train["source"]))
    logger.info(
        "%s: %d in-domain rows (sources seen in train.tsv) and %d out-of-domain rows (sources %s)",
        folder / GLUE_DEV_FILE,
        len(in_domain),
        len(out_of_domain),
        ", ".join(sorted(set(out_of_domain["source"]))) or "none",
    )
    splits = {TRAIN.name: train}
    if len(in_domain):
        splits[IN_DOMAIN_DEV.name] = in_domain
    if len(out_of_domain):
        splits[OUT_OF_DOMAIN_DEV.name] = out_of_domain
    splits[DEV.name] = dev  # all of dev.tsv, in its own order (not the union's)
    if (folder / GLUE_TEST_FILE).is_file():
        splits[TEST.name] = read_glue_test_tsv(folder / GLUE_TEST_FILE)
    return splits


def check_hub_split(dataset: datasets.Dataset, split: str, name: str) -> None:
    """Refuse a split without the glue/cola schema, with a bad label, or with an empty sentence."""
    missing = [column for column in HUB_COLUMNS if column not in dataset.column_names]
    if missing:
        raise DataError(
            f"{name} split '{split}': missing column(s) {', '.join(missing)}; expected the nyu-mll/glue cola "
            f"schema ({', '.join(HUB_COLUMNS)}), has {', '.join(dataset.column_names)}."
        )
    allowed = {0, 1} if split_named(hub_splits()[split]).labeled else {NO_LABEL, 0, 1}
    for idx, label, sentence in zip(dataset["idx"], dataset["label"], dataset["sentence"], strict=True):
        if label not in allowed:
            raise DataError(
                f"{name} split '{split}', idx {idx}: label {label!r} is not one of {sorted(allowed)}."
            )
        if not sentence or not sentence.strip():
            raise DataError(f"{name} split '{split}', idx {idx}: empty sentence.")


def local_dataset_cache_dir(folder: Path, cache_root: Path) -> Path:
    """A `datasets` cache folder unique to this folder's path and its files' names, sizes and mtimes."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_root / "datasets" / f"{folder.name}-{digest.hexdigest()[:16]}"


def load_hub_dataset(name: str, config: str | None, cache_dir: Path) -> dict[str, datasets.Dataset]:
    """A dataset with the nyu-mll/glue cola schema, from the Hub or a local folder, as our splits.

    A local folder's `datasets` cache goes under `cache_dir/datasets/`; a Hub dataset uses the usual cache.

    Raises:
        DataError: it cannot be reached (names what was tried and how to pass a local copy), or its
            schema or contents are wrong.
    """
    local = Path(name).exists()
    # `datasets` keys its cache of a local folder by the folder's name and config, not by its files, so a
    # second copy named the same would silently load the first one's rows: give each version its own cache.
    dataset_cache = str(local_dataset_cache_dir(Path(name), cache_dir)) if local else None
    try:
        try:
            loaded = datasets.load_dataset(name, config, cache_dir=dataset_cache)
        except ValueError as err:
            # A plain local folder of split files has only the default config, not "cola".
            if not (local and config and "BuilderConfig" in str(err)):
                raise
            loaded = datasets.load_dataset(name, cache_dir=dataset_cache)
    except (ConnectionError, FileNotFoundError, OSError, datasets.exceptions.DatasetNotFoundError) as err:
        tried = f"the local folder '{name}'" if local else f"the Hugging Face Hub dataset '{name}'"
        raise DataError(
            f"Could not load --dataset_name {name} (config {config}): tried {tried}, which failed: {err}.\n"
            "Without a network, pass a local copy: --dataset_name /path/to/folder holding one parquet/csv file "
            "per split (train, validation, test) with columns sentence, label, idx, for example saved by "
            "`huggingface-cli download nyu-mll/glue --repo-type dataset --local-dir glue` on a machine with a "
            "network; or the TSV files with --data_dir (or --download for the release zip)."
        ) from err
    except datasets.exceptions.DatasetGenerationError as err:  # e.g. splits whose columns differ
        raise DataError(
            f"--dataset_name {name}: could not be read ({err.__cause__ or err}); every split needs the "
            f"nyu-mll/glue cola columns {', '.join(HUB_COLUMNS)}."
        ) from err
    ours = hub_splits()
    if TRAIN.hub_split not in loaded:
        raise DataError(f"{name}: no '{TRAIN.hub_split}' split (has {', '.join(loaded)}).")
    splits: dict[str, datasets.Dataset] = {}
    for hub_split, dataset in loaded.items():
        if hub_split not in ours:
            logger.warning("%s: split '%s' is not one of %s; ignored.", name, hub_split, ", ".join(ours))
            continue
        check_hub_split(dataset, hub_split, name)
        splits[ours[hub_split]] = dataset.cast_column("label", datasets.ClassLabel(names=LABEL_NAMES))
    return splits


def split_seed(data_args: DataArguments, seed: int) -> int:
    """The seed of the train/validation split: --validation_split_seed when set, else the run's `seed`."""
    return seed if data_args.validation_split_seed is None else data_args.validation_split_seed


def choose_validation(
    splits: dict[str, datasets.Dataset], data_args: DataArguments, seed: int
) -> dict[str, datasets.Dataset]:
    """Apply `--validation_strategy`: a seeded split of train, the in-domain dev, or none."""
    splits = dict(splits)
    train = TRAIN.name
    if data_args.max_train_samples is not None:
        splits[train] = splits[train].select(range(min(data_args.max_train_samples, len(splits[train]))))
    if data_args.validation_strategy == "split":
        if data_args.validation_split > 0:
            # The tutorial's seeded 90/10 split of the in-domain train set.
            parts = splits[train].train_test_split(
                test_size=data_args.validation_split,
                seed=seed,
                stratify_by_column="label" if data_args.stratify_validation else None,
            )
            # `train_test_split` returns its two parts in this order: the kept rows, then the held-out ones.
            splits[train], splits[VALIDATION.name] = parts.values()
        else:
            logger.info("--validation_split 0: no validation set (like --validation_strategy none).")
    elif data_args.validation_strategy == DEV.name:
        if IN_DOMAIN_DEV.name in splits:
            splits[VALIDATION.name] = splits[IN_DOMAIN_DEV.name]
        else:
            # The Hub copy has no source column, so its dev cannot be narrowed to in-domain.
            logger.warning("No in-domain dev set apart from the out-of-domain one; validating on all of dev.")
            splits[VALIDATION.name] = splits[DEV.name]
    return splits


def describe_split(split: str, dataset: datasets.Dataset) -> str:
    """One log line: size, label balance, and sentence length in words (min / mean / max)."""
    labels = dataset["label"]
    lengths = [len(sentence.split()) for sentence in dataset["sentence"]]
    labeled = [label for label in labels if label != NO_LABEL]
    balance = (
        f"{sum(labeled)} acceptable ({100 * sum(labeled) / len(labeled):.1f}%), {len(labeled) - sum(labeled)} not"
        if labeled
        else "unlabeled"
    )
    return (
        f"{split}: {len(dataset)} examples, {balance}; words per sentence min {min(lengths)}, "
        f"mean {statistics.fmean(lengths):.1f}, max {max(lengths)}"
    )


def count_shared_sentences(train: datasets.Dataset, other: datasets.Dataset) -> int:
    """Rows of `other` whose sentence (whitespace-trimmed) also occurs in `train`."""
    seen = {sentence.strip() for sentence in train["sentence"]}
    return sum(sentence.strip() in seen for sentence in other["sentence"])


def load_cola_splits(data_args: DataArguments, seed: int) -> datasets.DatasetDict:
    """Load CoLA from wherever `data_args` points into train / validation / test splits.

    Returns a DatasetDict with (in this order, each when available) `train`, `validation`,
    `in_domain_dev`, `out_of_domain_dev`, `dev` (their union) and `test` (unlabeled, label -1).
    The validation split is drawn with `seed` (the run's), or `--validation_split_seed` when set.

    Raises:
        DataError: no usable data (the message says which layouts were expected and where to get CoLA),
            or a malformed file (named, with the line).
    """
    # The download, the extraction and the `datasets` cache are shared files: written once, by the main
    # process; the others then read them.
    with main_process_first("loading CoLA"):
        source = resolve_data_source(data_args)
        logger.info("CoLA source: %s layout at %s", source.layout, source.location)
        if source.layout == "hub":
            splits = load_hub_dataset(
                source.location, data_args.dataset_config_name, Path(data_args.data_cache_dir)
            )
        elif source.layout == "glue":
            splits = load_glue_folder(Path(source.location))
        else:
            splits = load_release_folder(Path(source.location))
        splits = choose_validation(splits, data_args, split_seed(data_args, seed))
        ordered = {split.name: splits[split.name] for split in in_order(splits)}
        for split, dataset in ordered.items():
            logger.info(describe_split(split, dataset))
            if split != TRAIN.name:
                shared = count_shared_sentences(ordered[TRAIN.name], dataset)
                if shared:
                    logger.warning("%s: %d of %d sentences also occur in train.", split, shared, len(dataset))
        return datasets.DatasetDict(ordered)


def check_splits_for_run(raw: datasets.DatasetDict, training_args: TrainingArguments) -> None:
    """Refuse, before any training, a run the loaded splits cannot serve.

    Raises:
        ConfigError: evaluation during training without a validation set.
        DataError: --do_predict without an unlabeled test set.
    """
    if VALIDATION.name not in raw and training_args.eval_strategy != "no":
        raise ConfigError(
            f"No validation set (--validation_strategy none or --validation_split 0), but --eval_strategy "
            f"{training_args.eval_strategy.value} evaluates on one during training. Pass --eval_strategy no "
            "(and --load_best_model_at_end false) to train on everything."
        )
    if training_args.do_predict and TEST.name not in raw:
        raise DataError(
            "--do_predict writes CoLA.tsv from an unlabeled test set, and this data has none: use the GLUE "
            "layout with test.tsv (--data_dir glue_data/CoLA) or --dataset_name nyu-mll/glue."
        )
