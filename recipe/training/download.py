"""Fetch the CoLA release zip once: download, verify its sha256, extract atomically into a cache folder.

Nothing half-written is ever left where a later run would trust it: the download goes to a temporary
file in the cache folder and is renamed into place only after its checksum matched, and the archive is
extracted into a temporary folder that is renamed into place only when extraction finished.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

COLA_DOWNLOAD_URL = "https://nyu-mll.github.io/CoLA/cola_public_1.1.zip"
COLA_SHA256 = "2cf856f46df11c143d38e0cf2f9f34ff2fdb088c521cd859f5c4b9581683278b"
# The marker of a CoLA release folder (the zip holds it as cola_public/raw/in_domain_train.tsv).
RELEASE_MARKER = Path("raw") / "in_domain_train.tsv"
RELEASE_FOLDER_NAME = "cola_public"
CHUNK_BYTES = 1 << 16
TIMEOUT_S = 60.0


class DownloadError(OSError):
    """A download or archive that cannot be used; the message names the URL or file and what to do."""


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, destination: Path, sha256: str, timeout_s: float = TIMEOUT_S) -> Path:
    """Download `url` to `destination`, with a progress bar, keeping it only when its sha256 matches.

    The bytes go to a temporary file next to `destination` (same folder, so the final rename is atomic)
    and are hashed while they arrive. A short body, a lost connection or a checksum mismatch removes the
    temporary file, so the next run starts clean.

    Raises:
        DownloadError: the server could not be reached, the transfer stopped early, or the checksum differs.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
    )
    temporary = Path(temporary_name)
    digest = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            header = response.headers.get("Content-Length")
            expected_bytes = int(header) if header is not None else None
            with tqdm(
                total=expected_bytes, unit="B", unit_scale=True, desc=f"Downloading {destination.name}"
            ) as progress:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
        # http.client returns b"" instead of raising when the server closes early, so count the bytes.
        if expected_bytes is not None and received != expected_bytes:
            raise DownloadError(
                f"Download of {url} stopped after {received} of {expected_bytes} bytes (the connection "
                "closed early). Nothing was kept; run again to retry."
            )
        actual = digest.hexdigest()
        if actual != sha256.lower():
            raise DownloadError(
                f"Checksum mismatch for {url}: expected sha256 {sha256}, got {actual}. The file was "
                "discarded. If you meant to use a different release, pass its sha256 with --download_sha256."
            )
        os.replace(temporary, destination)
    except DownloadError:
        temporary.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        temporary.unlink(missing_ok=True)
        raise DownloadError(
            f"Could not download {url} after {received} bytes: {err}. Nothing was kept. Check the network, "
            "or download the zip yourself and pass it with --data_dir /path/to/cola_public_1.1.zip."
        ) from err
    logger.info("Downloaded %s (%d bytes, sha256 verified) to %s", url, received, destination)
    return destination


def find_release_root(folder: Path) -> Path | None:
    """The folder at or below `folder` holding raw/in_domain_train.tsv (the release's cola_public/)."""
    if (folder / RELEASE_MARKER).is_file():
        return folder
    for marker in sorted(folder.rglob(str(RELEASE_MARKER))):
        return marker.parent.parent
    return None


def extract_release_zip(zip_path: Path, target: Path) -> Path:
    """Extract a CoLA release zip so that `target` is the release folder (holding raw/).

    Extraction happens in a temporary folder next to `target`, renamed into place only when complete.
    An existing `target` is reused as it is.

    Raises:
        DownloadError: the file is not a zip, or holds no raw/in_domain_train.tsv.
    """
    if (target / RELEASE_MARKER).is_file():
        return target
    if target.exists():
        raise DownloadError(
            f"{target} exists but holds no {RELEASE_MARKER.as_posix()}; remove it or choose another "
            "--data_cache_dir, so the release can be extracted there."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extract", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(staging)  # zipfile drops absolute paths and ".." from member names
        except zipfile.BadZipFile as err:
            raise DownloadError(f"{zip_path}: not a valid zip archive ({err}).") from err
        root = find_release_root(staging)
        if root is None:
            raise DownloadError(
                f"{zip_path}: no {RELEASE_MARKER.as_posix()} inside; expected the CoLA release zip "
                f"(cola_public_1.1.zip from {COLA_DOWNLOAD_URL})."
            )
        os.replace(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Extracted %s to %s", zip_path, target)
    return target


def fetch_cola_release(url: str, sha256: str, cache_dir: Path) -> Path:
    """The CoLA release folder in `cache_dir`, downloading and extracting the zip only when missing.

    Returns `cache_dir/cola_public`. A later run finds it there and makes no request; a verified zip
    already in the cache is extracted without downloading again.
    """
    target = cache_dir / RELEASE_FOLDER_NAME
    if (target / RELEASE_MARKER).is_file():
        logger.info("Using the CoLA release already in %s (no download).", target)
        return target
    zip_path = cache_dir / (Path(urllib.parse.urlparse(url).path).name or "cola_public.zip")
    if zip_path.is_file() and sha256_of(zip_path) != sha256.lower():
        logger.warning("%s does not match sha256 %s; downloading it again.", zip_path, sha256)
        zip_path.unlink()
    if not zip_path.is_file():
        download_file(url, zip_path, sha256)
    return extract_release_zip(zip_path, target)
