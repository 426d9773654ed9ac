"""Keep tokens and credentials out of logs and saved arguments: the one rule for what is a secret
(`is_credential`) and every way the recipe masks one.

transformers already masks `*_token` fields in `TrainingArguments.to_dict()` / `to_json_string()`, but
not in `training_args.bin` (a pickle of the arguments saved next to every checkpoint), and nothing
stops a token from reaching a log line by another road (a value that equals `$HF_TOKEN`, a library's
message). So: `secret_values` collects every secret this process knows (token-like argument fields
and token-like environment variables), `install_log_redaction` masks them in every log record of
every logger, and `tokens_hidden` blanks the token fields while the Trainer pickles its arguments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

REDACTED = "<redacted>"
# Argument fields holding a credential: TrainingArguments.hub_token, a model `token`, API keys.
SECRET_FIELD = re.compile(r"(^|_)(token|password|secret|api_key|access_key)$")
# Environment variables holding one: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, WANDB_API_KEY, AWS_SECRET_ACCESS_KEY...
# (TOKENIZERS_PARALLELISM does not match: the word must end at "_" or the end of the name.)
SECRET_ENV = re.compile(r"(^|_)(TOKEN|PASSWORD|SECRET|API_KEY|ACCESS_KEY|SECRET_KEY|CREDENTIALS?)($|_)")
# Shorter values are not credentials and masking them would mangle ordinary text ("1", "true").
MIN_SECRET_LENGTH = 8


def is_credential(key: str) -> bool:
    """A setting that holds a secret (--hub_token, a model `token`, an API key): masked wherever it is
    shown (logs, run_args.json, the card), left out wherever it would be repeated (commands, best.yaml)."""
    return bool(SECRET_FIELD.search(key))


def secret_fields(args: Any) -> list[str]:
    """Names of the dataclass fields of `args` that hold a credential."""
    return [f.name for f in dataclasses.fields(args) if is_credential(f.name)]


def secret_values(arg_objects: Iterable[Any] = (), environ: dict[str, str] | None = None) -> set[str]:
    """Every credential value in the argument dataclasses and the environment (long enough to matter)."""
    environ = os.environ if environ is None else environ
    values = {
        getattr(args, name)
        for args in arg_objects
        if dataclasses.is_dataclass(args)
        for name in secret_fields(args)
    }
    values |= {value for name, value in environ.items() if SECRET_ENV.search(name.upper())}
    return {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced by `<redacted>` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class LogRedactor:
    """A `logging` record factory that masks known secrets in each record's message.

    A record factory (not a handler filter) covers every logger and handler, including the ones
    transformers and datasets attach to their own loggers.
    """

    def __init__(self, base_factory: Any) -> None:
        self.base_factory = base_factory
        self.secrets: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base_factory(*args, **kwargs)
        if self.secrets:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: leave it for logging's own error report
                return record
            cleaned = redact(message, self.secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return record


def install_log_redaction(secrets: Iterable[str]) -> LogRedactor:
    """Mask `secrets` in every log record from now on (idempotent; secrets accumulate)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, LogRedactor):
        factory = LogRedactor(factory)
        logging.setLogRecordFactory(factory)
    factory.secrets |= set(secrets)
    return factory


@contextlib.contextmanager
def tokens_hidden(args: Any) -> Iterator[None]:
    """Blank the credential fields of `args` (set them to None) inside the block, then restore them.

    Used while the Trainer pickles its arguments to training_args.bin: a reloaded file then has no
    token, and the user passes it again where it is needed.
    """
    saved = {name: getattr(args, name) for name in secret_fields(args)}
    try:
        for name in saved:
            setattr(args, name, None)
        yield
    finally:
        for name, value in saved.items():
            setattr(args, name, value)


def redacted_dict(args: Any) -> dict[str, Any]:
    """`dataclasses.asdict(args)` with credential fields masked, for report writers saving arguments."""
    values = dataclasses.asdict(args)
    return {k: (REDACTED if k in secret_fields(args) and v else v) for k, v in values.items()}
