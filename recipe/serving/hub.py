"""`--push_to_hub`: upload the finished output folder to the Hugging Face Hub once, at the end of the run.

The stock Trainer pushes at every save (`hub_strategy`), before the model card, plots, results and
predictions exist. The recipe keeps the stock flags (`--push_to_hub`, `--hub_model_id`, `--hub_token`,
`--hub_private_repo`) but hands the Trainer `push_to_hub=False` (`defer_push_to_end`), then uploads the
folder in one commit when everything is written (`push_output_folder`), checkpoints left out.

A failed upload (offline, no token, a Hub error) never loses the run: everything stays on disk, one
message says what failed and how to upload later, and `run_cola.py` exits with HUB_PUSH_FAILED_EXIT.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi
from transformers import TrainingArguments

from recipe.runtime.redaction import redact, secret_values

logger = logging.getLogger(__name__)

# Exit status of `run_cola.py` when the run finished but its upload failed (2: a usage error, 130/143: stopped).
HUB_PUSH_FAILED_EXIT = 3
# What stays local: intermediate checkpoints (the final model is at the folder's top level) and
# underscore-prefixed scratch files, as the stock Trainer.push_to_hub leaves out.
UPLOAD_IGNORE_PATTERNS = ["checkpoint-*", "corrupt-checkpoint-*", "_*"]


class HubPushError(RuntimeError):
    """The run finished and is on disk, but uploading it to the Hub failed; the message says how to retry."""

    exit_code = HUB_PUSH_FAILED_EXIT


@dataclass(frozen=True)
class HubTarget:
    """Where `--push_to_hub` uploads: the repository and how to create it."""

    repo_id: str  # --hub_model_id, else the output folder's name (as the stock Trainer names it)
    token: str | None = None  # --hub_token; None: the logged-in token ($HF_TOKEN, `hf auth login`)
    private: bool | None = None  # --hub_private_repo; None: the account's default


def defer_push_to_end(training_args: TrainingArguments) -> HubTarget | None:
    """Turn the Trainer's push at every save off and return where to upload once at the end.

    Sets `training_args.push_to_hub = False` (so the Trainer neither creates the repository at start nor
    pushes checkpoints). Returns None when --push_to_hub is not set.
    """
    if not training_args.push_to_hub:
        return None
    target = HubTarget(
        repo_id=training_args.hub_model_id or Path(training_args.output_dir).absolute().name,
        token=training_args.hub_token,
        private=training_args.hub_private_repo,
    )
    training_args.push_to_hub = False
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no"):
        logger.warning(
            "--push_to_hub with HF_HUB_OFFLINE set: the upload at the end will fail; the run itself "
            "completes and stays in %s.",
            training_args.output_dir,
        )
    return target


def upload_command(target: HubTarget, folder: Path) -> str:
    """The `hf upload` command that uploads `folder` later, as the run would have (checkpoints excluded)."""
    words = ["hf", "upload", target.repo_id, str(folder), "."]
    for pattern in UPLOAD_IGNORE_PATTERNS:
        words += ["--exclude", pattern]
    if target.private:
        words.append("--private")
    return shlex.join(words)


def push_output_folder(target: HubTarget, output_dir: str | Path) -> str:
    """Create the repository if needed and upload `output_dir` in one commit; returns the repository URL.

    Raises:
        HubPushError: anything the Hub client raised (offline, authentication, a Hub or network error);
            the folder is left as it is.
    """
    folder = Path(output_dir)
    api = HfApi(token=target.token)
    try:
        url = api.create_repo(target.repo_id, private=target.private, exist_ok=True)
        api.upload_folder(
            repo_id=url.repo_id,
            folder_path=folder,
            ignore_patterns=UPLOAD_IGNORE_PATTERNS,
            commit_message="Upload CoLA fine-tuning run (run_cola.py)",
        )
    # Broad on purpose: whatever the Hub client raises (offline mode, HTTP, network, auth), the run's
    # files are complete on disk and the user gets one message instead of a traceback.
    except Exception as err:
        first_line = str(err).splitlines()[0].rstrip(".") if str(err) else ""
        # Printed, not logged, so the log's redaction does not reach it: mask the token (and $HF_TOKEN...) here.
        first_line = redact(first_line, secret_values([target]))
        raise HubPushError(
            f"the run finished and everything is in {folder}, but the upload to the Hub repository "
            f"'{target.repo_id}' failed: {type(err).__name__}: {first_line}. Upload it later with: "
            f"{upload_command(target, folder)}"
        ) from err
    logger.info("Uploaded %s to %s", folder, url)
    print(f"Pushed {folder} to {url}")  # printed: the default log level (warning) would hide it
    return str(url)
