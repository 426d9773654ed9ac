"""bench/RESULTS.md holds one section per benchmark (CPU, GPU); each script rewrites only its own."""

from __future__ import annotations

from pathlib import Path

HEADER = "# Benchmark results\n\nWritten by `make bench` (CPU) and `bench/gpu.sh` (GPU); each rewrites its own section.\n"


def replace_section(path: Path, name: str, body: str) -> None:
    """Write `body` between this section's markers in `path`, keeping every other section as it is."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = path.read_text(encoding="utf-8") if path.is_file() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
