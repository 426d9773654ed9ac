"""Safe loading (safetensors only unless opted in, no remote code) and no credential on disk or in logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fast_args
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

import run_cola
from recipe.runtime.io import save_metrics_atomically, write_json_atomic
from recipe.runtime.redaction import REDACTED, install_log_redaction, secret_values
from recipe.training.arguments import ModelArguments, parse_args
from recipe.training.model import CheckpointError, load_model

REPO = Path(__file__).resolve().parent.parent
HUB_TOKEN = "hf_SECRET123flagtoken"
ENV_TOKEN = "hf_ENVSECRET456envtoken"


@pytest.fixture(scope="module")
def pickle_only_checkpoint(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT with its weights saved only as pytorch_model.bin (torch.save of the state dict)."""
    folder = tmp_path_factory.mktemp("pickle-only")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    model.config.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    assert not list(folder.glob("*.safetensors"))
    return folder


def test_a_pickle_only_checkpoint_is_refused_with_a_clear_error(
    pickle_only_checkpoint, cola_dir, tmp_path, capsys
):
    with pytest.raises(CheckpointError, match=r"pickle.*pytorch_model\.bin.*--allow_pickle_checkpoint"):
        load_model(ModelArguments(model_name_or_path=str(pickle_only_checkpoint)))
    flags = fast_args(pickle_only_checkpoint, cola_dir, tmp_path / "out", "--save_strategy", "no")
    assert run_cola.cli(flags) == 2
    err = capsys.readouterr().err
    assert str(pickle_only_checkpoint) in err and "--allow_pickle_checkpoint" in err


def test_pickle_loads_only_when_the_user_opts_in(pickle_only_checkpoint):
    model = load_model(
        ModelArguments(model_name_or_path=str(pickle_only_checkpoint), allow_pickle_checkpoint=True)
    )
    saved = torch.load(pickle_only_checkpoint / "pytorch_model.bin", weights_only=True)
    loaded = model.state_dict()
    assert all(torch.equal(saved[name], loaded[name]) for name in saved)


def test_remote_code_is_off_unless_asked(tiny_bert, tmp_path):
    """A checkpoint that ships modelling code (config auto_map): the code is never imported."""
    assert ModelArguments().trust_remote_code is False
    assert parse_args(["--model_name_or_path", "x"])[0].trust_remote_code is False
    folder = tmp_path / "with-code"
    BertForSequenceClassification.from_pretrained(tiny_bert).save_pretrained(folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "custom_bert.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class CustomConfig(BertConfig):\n    pass\n"
        "class CustomModel(BertForSequenceClassification):\n    pass\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "custom_bert.CustomConfig",
        "AutoModelForSequenceClassification": "custom_bert.CustomModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    model = load_model(ModelArguments(model_name_or_path=str(folder)))
    assert type(model) is BertForSequenceClassification
    assert not marker.exists()


def test_no_token_in_any_saved_file_or_in_the_log(tiny_bert, cola_dir, tmp_path):
    """--hub_token and $HF_TOKEN appear nowhere: not in the log (at info level), not in any file of the
    output folder (checkpoints' and the final training_args.bin included)."""
    out = tmp_path / "out"
    flags = fast_args(
        tiny_bert, cola_dir, out, "--hub_token", HUB_TOKEN, "--log_level", "info", "--max_steps", "3"
    )
    env = {**os.environ, "HF_TOKEN": ENV_TOKEN}
    result = subprocess.run(
        [sys.executable, str(REPO / "run_cola.py"), *flags], cwd=REPO, env=env, capture_output=True
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log.decode(errors="replace")
    assert b"Training arguments" in log and b"<HUB_TOKEN>" in log  # the arguments were logged, masked
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" and p.parent.name.startswith("checkpoint-") for p in files)
    for secret in (HUB_TOKEN, ENV_TOKEN):
        assert secret.encode() not in log
        leaking = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaking, f"{secret} found in {leaking}"
    saved_args = torch.load(out / "training_args.bin", weights_only=False)
    assert saved_args.hub_token is None


def test_log_lines_mask_token_like_environment_values(caplog):
    install_log_redaction(secret_values(environ={"HF_TOKEN": ENV_TOKEN, "TOKENIZERS_PARALLELISM": "false"}))
    with caplog.at_level(logging.INFO):
        logging.getLogger("recipe.test").warning("downloading with %s from %s", ENV_TOKEN, "the hub")
        logging.getLogger("recipe.test").warning("tokenizers parallelism is false")
    assert ENV_TOKEN not in caplog.text and REDACTED in caplog.text
    assert "parallelism is false" in caplog.text  # short, non-secret values are left alone


def test_atomic_write_goes_through_a_temp_file_in_the_same_folder(tmp_path, monkeypatch):
    target = tmp_path / "all_results.json"
    replaced = []
    real_replace = os.replace

    def recording_replace(src, dst):
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    write_json_atomic(target, {"eval_matthews_correlation": 0.5})
    assert replaced == [(replaced[0][0], target)] and replaced[0][0].parent == tmp_path
    assert json.loads(target.read_text()) == {"eval_matthews_correlation": 0.5}


def test_a_crash_mid_write_leaves_the_old_results_intact(tmp_path, monkeypatch):
    """save_metrics as the recipe's Trainer writes it (recipe.runtime.io.save_metrics_atomically); the disk fills up during the write (fsync fails)."""
    (tmp_path / "all_results.json").write_text(json.dumps({"train_loss": 0.25}))

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_metrics_atomically(tmp_path, "eval", {"eval_matthews_correlation": 0.5})
    assert json.loads((tmp_path / "all_results.json").read_text()) == {"train_loss": 0.25}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all_results.json"]  # no temp file left behind
    monkeypatch.undo()
    save_metrics_atomically(tmp_path, "eval", {"eval_matthews_correlation": 0.5})
    assert json.loads((tmp_path / "all_results.json").read_text()) == {
        "train_loss": 0.25,
        "eval_matthews_correlation": 0.5,
    }


def test_every_results_file_of_a_run_is_written_atomically(tiny_bert, cola_dir, tmp_path, monkeypatch):
    replaced: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda src, dst: (replaced.append(Path(dst).name), real_replace(src, dst))
    )
    run_cola.main(
        *parse_args(
            fast_args(tiny_bert, cola_dir, tmp_path / "out", "--max_steps", "2", "--save_strategy", "no")
        )
    )
    for name in (
        "train_results.json",
        "eval_results.json",
        "in_domain_dev_results.json",
        "all_results.json",
        "trainer_state.json",
    ):
        assert name in replaced, f"{name} was not written through write_json_atomic/write_text_atomic"
