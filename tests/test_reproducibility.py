"""Seeds: the same config and seed give the same run; the split, the head's init and the data order
each follow --seed."""

from __future__ import annotations

import torch
from conftest import fast_args, write_cola_release
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding, TrainingArguments

import run_cola
from recipe.training.arguments import DataArguments, ModelArguments, parse_args
from recipe.training.data import load_cola_splits
from recipe.training.model import load_model, load_tokenizer
from recipe.training.tokenization import tokenize_cola
from recipe.training.trainer import CoLATrainer

HEAD = ("classifier.weight", "classifier.bias")


def short_run(model, data, out, seed: int, *extra: str) -> dict[str, float]:
    return run_cola.main(
        *parse_args(
            fast_args(
                model, data, out, "--seed", str(seed), "--max_steps", "6", "--save_strategy", "no", *extra
            )
        )
    )


def test_same_seed_same_weights_and_metrics_different_seed_differs(tiny_bert, tmp_path):
    data = write_cola_release(tmp_path / "data", n_train=80, n_dev=20, n_ood=None)
    runs = [short_run(tiny_bert, data, tmp_path / f"run{i}", seed) for i, seed in enumerate((7, 7, 8))]
    weights = [load_file(tmp_path / f"run{i}" / "model.safetensors") for i in range(3)]
    timing = ("_runtime", "_per_second")
    metrics = [{k: v for k, v in run.items() if not k.endswith(timing)} for run in runs]

    assert metrics[0] == metrics[1]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert metrics[0]["in_domain_dev_loss"] != metrics[2]["in_domain_dev_loss"]
    assert not all(torch.equal(weights[0][name], weights[2][name]) for name in weights[0])


def test_the_validation_split_follows_the_seed(cola_dir):
    def validation_sentences(seed: int) -> list[str]:
        return load_cola_splits(DataArguments(data_dir=str(cola_dir)), seed=seed)["validation"]["sentence"]

    assert validation_sentences(1) == validation_sentences(1)
    assert validation_sentences(1) != validation_sentences(2)


def test_the_classifier_head_initialisation_follows_the_seed(tiny_bert, cola_dir, tmp_path):
    """Through main(): a step at learning rate 0 saves the freshly initialised head unchanged."""
    # An encoder-only checkpoint, like bert-base-uncased: the classification head is new.
    encoder_only = tmp_path / "encoder-only"
    AutoModel.from_pretrained(tiny_bert).save_pretrained(encoder_only)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(encoder_only)
    assert not any("classifier" in name for name in load_file(encoder_only / "model.safetensors"))
    heads = []
    for i, seed in enumerate((3, 3, 4)):
        out = tmp_path / f"run{i}"
        short_run(
            encoder_only,
            cola_dir,
            out,
            seed,
            "--max_steps",
            "1",
            "--learning_rate",
            "0",
            "--do_eval",
            "false",
        )
        saved = load_file(out / "model.safetensors")
        heads.append([saved[name] for name in HEAD])
    pretrained = load_file(encoder_only / "model.safetensors")
    embeddings = "embeddings.word_embeddings.weight"
    assert torch.equal(saved[f"bert.{embeddings}"], pretrained[embeddings])  # learning rate 0: unchanged
    assert all(torch.equal(a, b) for a, b in zip(heads[0], heads[1], strict=True))
    assert not torch.equal(heads[0][0], heads[2][0])


def test_the_data_order_follows_the_seed(tiny_bert, cola_dir, tmp_path):
    model_args = ModelArguments(model_name_or_path=str(tiny_bert))
    tokenizer = load_tokenizer(model_args)
    train = tokenize_cola(
        load_cola_splits(DataArguments(data_dir=str(cola_dir)), seed=0), tokenizer, DataArguments()
    )

    def first_batch_first_words(seed: int) -> list[int]:
        args = TrainingArguments(
            output_dir=str(tmp_path / "o"),
            seed=seed,
            use_cpu=True,
            per_device_train_batch_size=16,
            report_to="none",
        )
        trainer = CoLATrainer(
            model=load_model(model_args),
            args=args,
            train_dataset=train["train"],
            data_collator=DataCollatorWithPadding(tokenizer),  # as run_cola.main builds it
        )
        batch = next(iter(trainer.get_train_dataloader()))
        return batch["input_ids"][:, 1].tolist()  # the first word of each sentence, in batch order

    assert first_batch_first_words(11) == first_batch_first_words(11)
    assert first_batch_first_words(11) != first_batch_first_words(12)


def test_full_determinism_is_the_stock_knob_and_runs(tiny_bert, cola_dir, tmp_path, monkeypatch):
    """--full_determinism (TrainingArguments) turns on torch's deterministic algorithms for the run."""
    for name in ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "FLASH_ATTENTION_DETERMINISTIC"):
        monkeypatch.delenv(name, raising=False)  # it sets these; restored (removed) after the test
    monkeypatch.delenv("ASCEND_LAUNCH_BLOCKING", raising=False)
    monkeypatch.delenv("HCCL_DETERMINISTIC", raising=False)
    try:
        short_run(
            tiny_bert,
            cola_dir,
            tmp_path / "out",
            1,
            "--max_steps",
            "1",
            "--do_eval",
            "false",
            "--full_determinism",
        )
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)  # process-wide: leave the other tests as they were
