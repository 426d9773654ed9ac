"""Atomic file writes: a crash, a kill or a full disk never leaves a half-written results file.

Every report writer uses these instead of `open(path, "w")`: the text goes to a temporary file in the
same folder, is flushed to disk, and only then replaces the target with `os.replace` (atomic on POSIX
and Windows when both paths are on one filesystem, which the same folder guarantees). A reader sees
either the old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (temp file in the same folder, fsync, os.replace).

    Returns the path written. On any error the temporary file is removed and `path` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is only atomic within one filesystem.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def write_json_atomic(
    path: str | os.PathLike[str], obj: Any, indent: int = 4, sort_keys: bool = True
) -> Path:
    """Serialise `obj` as JSON and write it atomically; serialisation errors leave `path` untouched.

    The defaults (indent 4, sorted keys) match what `Trainer.save_metrics` writes.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n"
    return write_text_atomic(path, text)


def save_metrics_atomically(
    output_dir: str | os.PathLike[str], split: str, metrics: dict[str, Any], combined: bool = True
) -> None:
    """What `Trainer.save_metrics` writes, atomically: `{split}_results.json` and, merged into what is
    there, `all_results.json` (a kill mid-write leaves the previous file, never a truncated one)."""
    folder = Path(output_dir)
    write_json_atomic(folder / f"{split}_results.json", metrics)
    if combined:
        path = folder / "all_results.json"
        all_metrics: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        all_metrics.update(metrics)
        write_json_atomic(path, all_metrics)


def save_state_atomically(output_dir: str | os.PathLike[str], state: Any) -> None:
    """What `Trainer.save_state` writes (`TrainerState.save_to_json`'s JSON), atomically."""
    text = json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True) + "\n"
    write_text_atomic(Path(output_dir) / "trainer_state.json", text)
