"""Builders for the other shapes CoLA comes in, made from a generated release folder (conftest).

The GLUE folder, the release zip and a stand-in for the `nyu-mll/glue` Hub dataset, all written here
so the tests never need the network or the real data.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import datasets

LABEL_NAMES = ["unacceptable", "acceptable"]


def read_rows(path: Path) -> list[list[str]]:
    """The tab-separated fields of each line of a generated TSV."""
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_glue_folder(release: Path, folder: Path, n_test: int = 30, seed: int = 0) -> Path:
    """GLUE's CoLA layout from a release: train.tsv, dev.tsv (in- and out-of-domain rows interleaved,
    as GLUE ships them), and test.tsv with its `index<TAB>sentence` header and no labels."""
    raw = release / "raw"
    write_lines(folder / "train.tsv", (raw / "in_domain_train.tsv").read_text(encoding="utf-8").splitlines())
    dev = [*read_rows(raw / "in_domain_dev.tsv"), *read_rows(raw / "out_of_domain_dev.tsv")]
    random.Random(seed).shuffle(dev)
    write_lines(folder / "dev.tsv", ["\t".join(row) for row in dev])
    sentences = [row[3] for row in dev[:n_test]]
    write_lines(folder / "test.tsv", ["index\tsentence", *(f"{i}\t{s}" for i, s in enumerate(sentences))])
    return folder


def write_release_zip(release: Path, zip_path: Path) -> Path:
    """Zip a release folder the way cola_public_1.1.zip is laid out (everything under cola_public/)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(release.rglob("*")):
            if path.is_file():
                archive.write(path, Path("cola_public") / path.relative_to(release))
    return zip_path


def hub_split(rows: list[list[str]], labeled: bool = True) -> datasets.Dataset:
    """Rows as the Hub's glue/cola schema: sentence, label (-1 when unlabeled), idx."""
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=LABEL_NAMES),
            "idx": datasets.Value("int32"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "sentence": [row[3] for row in rows],
            "label": [int(row[1]) if labeled else -1 for row in rows],
            "idx": list(range(len(rows))),
        },
        features=features,
    )


def write_hub_standin(release: Path, folder: Path, with_configs: bool = True) -> Path:
    """A local copy shaped like the `nyu-mll/glue` repository: `cola/<split>-00000-of-00001.parquet`
    and a README whose metadata declares the `cola` config (or, without configs, `<split>.parquet`)."""
    raw = release / "raw"
    dev = [*read_rows(raw / "in_domain_dev.tsv"), *read_rows(raw / "out_of_domain_dev.tsv")]
    splits = {
        "train": hub_split(read_rows(raw / "in_domain_train.tsv")),
        "validation": hub_split(dev),
        "test": hub_split(dev[:25], labeled=False),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, dataset in splits.items():
        target = (
            folder / "cola" / f"{name}-00000-of-00001.parquet" if with_configs else folder / f"{name}.parquet"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(target))
    if with_configs:
        entries = "".join(f"  - split: {name}\n    path: cola/{name}-*\n" for name in splits)
        (folder / "README.md").write_text(
            f"---\nconfigs:\n- config_name: cola\n  data_files:\n{entries}---\n"
        )
    return folder
