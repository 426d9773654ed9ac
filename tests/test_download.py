"""Download on demand against a real HTTP server on 127.0.0.1 serving a release zip built here."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cola_layouts import write_release_zip
from conftest import write_cola_release

import run_cola
from recipe.training.arguments import DataArguments
from recipe.training.data import DataError, load_cola_splits
from recipe.training.download import DownloadError, download_file, fetch_cola_release

ZIP_NAME = "cola_public_1.1.zip"


class ZipServer:
    """A threaded HTTP server: /cola_public_1.1.zip serves the zip; /broken/... promises more bytes than it
    sends and closes the connection. Counts requests per path."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                server.requests[self.path] += 1
                if self.path == f"/{ZIP_NAME}":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(server.payload)))
                    self.end_headers()
                    self.wfile.write(server.payload)
                elif self.path == f"/broken/{ZIP_NAME}":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(server.payload) + 4096))
                    self.end_headers()
                    self.wfile.write(server.payload[: len(server.payload) // 2])
                    self.close_connection = True
                else:
                    self.send_error(404)

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"


@pytest.fixture
def release_zip(tmp_path) -> tuple[bytes, str]:
    """The bytes of a generated release zip and their sha256."""
    release = write_cola_release(tmp_path / "source" / "cola_public", n_train=40, n_dev=10, n_ood=8)
    payload = write_release_zip(release, tmp_path / "source" / ZIP_NAME).read_bytes()
    return payload, hashlib.sha256(payload).hexdigest()


@pytest.fixture
def server(release_zip) -> Iterator[ZipServer]:
    zip_server = ZipServer(release_zip[0])
    zip_server.thread.start()
    yield zip_server
    zip_server.httpd.shutdown()
    zip_server.httpd.server_close()
    zip_server.thread.join()


def download_args(tmp_path: Path, url: str, sha256: str) -> DataArguments:
    return DataArguments(
        data_dir=str(tmp_path / "absent"),
        download=True,
        download_url=url,
        download_sha256=sha256,
        data_cache_dir=str(tmp_path / "cache"),
    )


def cache_files(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache"
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []


def test_good_download_is_verified_extracted_and_reused_without_a_second_request(
    server, release_zip, tmp_path, capsys
):
    args = download_args(tmp_path, server.url(ZIP_NAME), release_zip[1])
    raw = load_cola_splits(args, seed=0)
    assert (len(raw["train"]) + len(raw["validation"]), len(raw["out_of_domain_dev"])) == (40, 8)
    assert server.requests[f"/{ZIP_NAME}"] == 1
    assert (tmp_path / "cache" / "cola_public" / "raw" / "in_domain_train.tsv").is_file()
    assert (tmp_path / "cache" / ZIP_NAME).read_bytes() == release_zip[0]
    assert not [name for name in cache_files(tmp_path) if name.startswith(".")], "temporary files left behind"
    assert f"Downloading {ZIP_NAME}" in capsys.readouterr().err  # the progress bar

    again = load_cola_splits(args, seed=0)
    assert server.requests[f"/{ZIP_NAME}"] == 1, "the second run must reuse the cache"
    assert again["train"]["sentence"] == raw["train"]["sentence"]


def test_a_verified_zip_in_the_cache_is_extracted_without_downloading(server, release_zip, tmp_path):
    cache = tmp_path / "cache"
    (cache).mkdir()
    (cache / ZIP_NAME).write_bytes(release_zip[0])
    release = fetch_cola_release(server.url(ZIP_NAME), release_zip[1], cache)
    assert (release / "raw" / "in_domain_dev.tsv").is_file() and sum(server.requests.values()) == 0


def test_a_foreign_folder_where_the_release_goes_is_not_overwritten(server, release_zip, tmp_path):
    (tmp_path / "cache" / "cola_public").mkdir(parents=True)
    (tmp_path / "cache" / "cola_public" / "mine.txt").write_text("keep me")
    with pytest.raises(DownloadError, match="exists but holds no raw/in_domain_train.tsv"):
        fetch_cola_release(server.url(ZIP_NAME), release_zip[1], tmp_path / "cache")
    assert (tmp_path / "cache" / "cola_public" / "mine.txt").read_text() == "keep me"
    assert not [name for name in cache_files(tmp_path) if name.startswith(".")]


def test_checksum_mismatch_is_refused_and_leaves_nothing_in_the_cache(server, tmp_path):
    args = download_args(tmp_path, server.url(ZIP_NAME), "0" * 64)
    with pytest.raises(DataError, match="Checksum mismatch") as error:
        load_cola_splits(args, seed=0)
    assert "--download_sha256" in str(error.value)
    assert cache_files(tmp_path) == []


def test_a_server_dying_mid_transfer_gives_a_clear_error_and_the_next_run_starts_clean(
    server, release_zip, tmp_path
):
    with pytest.raises(DataError, match=r"stopped after \d+ of \d+ bytes"):
        load_cola_splits(download_args(tmp_path, server.url(f"broken/{ZIP_NAME}"), release_zip[1]), seed=0)
    assert cache_files(tmp_path) == []
    raw = load_cola_splits(download_args(tmp_path, server.url(ZIP_NAME), release_zip[1]), seed=0)
    assert len(raw["in_domain_dev"]) == 10 and server.requests[f"/{ZIP_NAME}"] == 1


def test_unreachable_server_and_missing_file_are_clear_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP Error 404.*--data_dir /path/to/cola_public_1.1.zip"):
        download_file(server.url("nothing.zip"), tmp_path / "cache" / "x.zip", "0" * 64)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="Could not download"):
        download_file(f"http://127.0.0.1:{closed_port}/{ZIP_NAME}", tmp_path / "cache" / "x.zip", "0" * 64)
    assert cache_files(tmp_path) == []


def test_cli_reports_a_failed_download_in_one_line(server, tmp_path, capsys):
    status = run_cola.cli(
        [
            "--data_dir",
            str(tmp_path / "absent"),
            "--download",
            "--download_url",
            server.url(ZIP_NAME),
            "--download_sha256",
            "f" * 64,
            "--data_cache_dir",
            str(tmp_path / "cache"),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "run_cola.py: error: Checksum mismatch" in err and "Traceback" not in err
