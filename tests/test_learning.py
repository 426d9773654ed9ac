"""The loop learns a rule that needs word order and a relation between words, and the test that says
so fails when the model's position embeddings or its attention mask are broken on purpose.

The rule: every sentence holds "the", a noun and a verb; it is acceptable when the noun comes right
after "the" ("... the dog ran ..."), unacceptable when the verb does ("... the ran dog ..."). Both
labels have the same words, only their order differs, so a model that cannot tell positions apart, or
whose words cannot attend to each other, can do no better than chance.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import fast_args, write_tsv
from transformers.models.bert import modeling_bert

import run_cola
from recipe.training.arguments import parse_args

NOUNS = "cat dog bird fish man woman child teacher john mary book tree house ball car apple".split()
VERBS = "sat ran saw liked ate found gave took".split()
FILLER = "big small red old new happy quickly slowly on in under with to from and but that who".split()
PASS_MCC = 0.8  # the learning test's bar, on held-out validation and in-domain dev


def order_rows(n: int, seed: int) -> list[tuple[str, int, str, str]]:
    """CoLA rows following the rule above, about half acceptable, with 0-3 filler words either side."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.random() < 0.5
        noun, verb = rng.choice(NOUNS), rng.choice(VERBS)
        core = ["the", noun, verb] if label else ["the", verb, noun]
        words = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))] + core
        words += [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
        rows.append(("ord1", int(label), "" if label else "*", " ".join(words).capitalize() + "."))
    return rows


@pytest.fixture(scope="module")
def order_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("order")
    write_tsv(folder / "raw" / "in_domain_train.tsv", order_rows(2000, seed=1))
    write_tsv(folder / "raw" / "in_domain_dev.tsv", order_rows(200, seed=2))
    return folder


def learn_the_rule(model: Path, data: Path, out: Path) -> dict[str, float]:
    """Train on the rule; return the held-out MCCs the learning test judges."""
    # 8 epochs at 3e-3 reach 0.97 / 0.96 on the stock path (6 epochs: 0.66; 6 at 1e-3: 0.58).
    flags = fast_args(model, data, out, "--num_train_epochs", "8", "--learning_rate", "3e-3")
    flags += ["--per_device_train_batch_size", "32"]
    results = run_cola.main(*parse_args([*flags, "--save_strategy", "no", "--write_report", "false"]))
    return {split: results[f"{split}_matthews_correlation"] for split in ("eval", "in_domain_dev")}


def passes(mccs: dict[str, float]) -> bool:
    return all(mcc >= PASS_MCC for mcc in mccs.values())


def test_the_loop_learns_a_rule_of_word_order(tiny_bert, order_data, tmp_path):
    mccs = learn_the_rule(tiny_bert, order_data, tmp_path / "out")
    assert passes(mccs), mccs


def test_control_without_position_embeddings_the_rule_is_not_learned(
    tiny_bert, order_data, tmp_path, monkeypatch
):
    """Every token gets position 0: the encoder sees a bag of words, and the learning test must fail."""
    intact = modeling_bert.BertEmbeddings.forward

    def no_positions(self, input_ids=None, token_type_ids=None, position_ids=None, **kwargs):
        return intact(self, input_ids, token_type_ids, torch.zeros_like(input_ids), **kwargs)

    monkeypatch.setattr(modeling_bert.BertEmbeddings, "forward", no_positions)
    mccs = learn_the_rule(tiny_bert, order_data, tmp_path / "out")
    assert not passes(mccs), mccs


def test_control_with_a_broken_attention_mask_the_rule_is_not_learned(
    tiny_bert, order_data, tmp_path, monkeypatch
):
    """The mask hides every word from every token (only [CLS] is visible): the test must fail."""
    intact = modeling_bert.BertModel.forward

    def cls_only_mask(self, *args, attention_mask=None, **kwargs):
        broken = torch.zeros_like(attention_mask)
        broken[:, 0] = 1
        return intact(self, *args, attention_mask=broken, **kwargs)

    monkeypatch.setattr(modeling_bert.BertModel, "forward", cls_only_mask)
    mccs = learn_the_rule(tiny_bert, order_data, tmp_path / "out")
    assert not passes(mccs), mccs
