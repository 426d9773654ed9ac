"""What a folder holds, by content: for tests that claim a folder was left unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path) with the SHA-256 of its bytes: a changed byte, a new,
    renamed or removed file all show as a different mapping."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
