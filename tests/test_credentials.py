"""One rule for what is a secret (recipe/runtime/redaction.py `is_credential`), asked by every place a setting
leaves the process: the settings table and run_args.json, the reproduce command and best.yaml, training_args.bin
and the message of a failed Hub upload."""

from __future__ import annotations

import pytest

from recipe.runtime import redaction
from recipe.serving import hub
from recipe.training import settings
from recipe.training.arguments import build_parser, known_keys, parse_args

TOKEN = "hf_CREDENTIALtest0123456789"


def test_settings_ask_the_redaction_rule():
    assert settings.is_credential is redaction.is_credential
    assert redaction.is_credential("hub_token") and redaction.is_credential("wandb_api_key")
    assert not redaction.is_credential("tokenizer_name") and not redaction.is_credential("max_seq_length")
    # The only credential among today's flags; a new one is masked everywhere by the same rule.
    assert {key for key in known_keys(build_parser()) if redaction.is_credential(key)} == {"hub_token"}


def test_a_token_is_masked_in_every_settings_view(tmp_path):
    args = parse_args(["--output_dir", str(tmp_path / "out"), "--hub_token", TOKEN])
    training_args = args[2]
    shown = settings.effective_settings(*args)
    assert shown["hub_token"]["value"] == redaction.REDACTED
    assert TOKEN not in repr(settings.arguments_as_dicts(*args))
    assert "hub_token" not in settings.settings_differing_from_defaults(*args)
    assert TOKEN not in settings.reproduce_command(*args)
    with redaction.tokens_hidden(training_args):  # while the Trainer pickles training_args.bin
        assert training_args.hub_token is None
    assert training_args.hub_token == TOKEN


class FailingHubApi:
    """A Hub client whose error message carries the token it was given (as an echoing server might)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def create_repo(self, *args, **kwargs):
        raise RuntimeError(f"401 Unauthorized: token {self.token} is not valid")


def test_a_failed_upload_does_not_print_the_token(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "HfApi", FailingHubApi)
    target = hub.HubTarget(repo_id="user/cola", token=TOKEN)
    with pytest.raises(hub.HubPushError) as failed:
        hub.push_output_folder(target, tmp_path)
    assert TOKEN not in str(failed.value)
    assert f"token {redaction.REDACTED} is not valid" in str(failed.value)
