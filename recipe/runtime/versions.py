"""What a run ran on: library versions, the machine, and the recipe's git commit.

Recorded in run_args.json (key `versions`) and in the model card, so a result can be traced to the
software that produced it.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from recipe.runtime import hardware

# The distributions whose versions decide a run's numbers (and the one that uploads it).
RECORDED_PACKAGES = ("torch", "transformers", "datasets", "accelerate", "evaluate", "huggingface_hub")
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]  # recipe/runtime/versions.py -> the checkout
DIRTY_MARK = "-dirty"  # as `git describe --dirty` marks a tree with uncommitted changes


def package_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(folder: Path = REPOSITORY_ROOT) -> str | None:
    """The commit checked out in `folder`, with DIRTY_MARK when tracked files have uncommitted changes.

    None when git is not installed or `folder` is not inside a git checkout (an installed package):
    the record then simply has no commit, it is never an error.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # Untracked files (run outputs, caches) do not change the code that ran, so they do not count.
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + (DIRTY_MARK if changed else "")


def run_versions(machine: str = "") -> dict[str, str]:
    """Python and library versions, the machine and, from a checkout, the commit.

    `machine` is the run's recorded `Hardware.describe()` (`recipe_args.machine`, from when the run's
    defaults were chosen); empty, the machine is looked at now (`python run_cola.py env`).

    A package that is not installed and a missing commit are left out rather than recorded as null.
    """
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        version = package_version(name)
        if version is not None:
            versions[name] = version
    versions["machine"] = machine or hardware.detect_hardware().describe()
    commit = git_commit()
    if commit is not None:
        versions["git_commit"] = commit
    return versions
