"""Shared fixtures: a tiny BERT with a WordPiece vocabulary written here, and CoLA-format TSVs.

Everything is offline and CPU-only, and the same on every host:
- HF_HUB_OFFLINE=1 for the whole session, so a test that reached for the Hub would fail instead of downloading;
- the Hugging Face caches (hub, datasets, evaluate modules: what tokenizers and models load from) and torch's
  cache are empty folders of this session, so a machine with bert-base-uncased cached takes the same paths
  as one without;
- the hardware layer (recipe/runtime/hardware.py) is pinned: every test sees PLAIN_CPU unless it asks for another
  machine, and subprocesses see no GPU (CUDA_VISIBLE_DEVICES="") and a plain AVX2 CPU (COLA_CPU_FLAGS).
These are environment variables, set before anything reads them, so the runs tests start inherit them.

COLA_TEST_SIMULATED_HOST=cuda runs the suite as on a GPU box with a bf16 CPU: the recipe's own code (recipe/,
run_cola.py, bench/) that asked torch about CUDA, or read /proc/cpuinfo, would hear of an A100 and AMX.
The results must not change (the recipe asks the pinned hardware layer only):
    COLA_TEST_SIMULATED_HOST=cuda make test
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The runs tests start in subprocesses see a plain AVX2 CPU too (recipe/runtime/hardware.py), like PLAIN_CPU below,
# and no GPU, whatever the host has.
os.environ["COLA_CPU_FLAGS"] = "sse4_2 avx avx2 fma"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
# The session's own, empty caches (removed when the session ends).
CACHE_ROOT = Path(tempfile.mkdtemp(prefix="cola-test-caches-"))
CACHE_DIRS = {
    "HF_HOME": CACHE_ROOT / "huggingface",
    "HF_HUB_CACHE": CACHE_ROOT / "huggingface" / "hub",  # models and tokenizers
    "HF_DATASETS_CACHE": CACHE_ROOT / "huggingface" / "datasets",
    "TRANSFORMERS_CACHE": CACHE_ROOT / "huggingface" / "hub",  # older transformers' name for the hub cache
    "TORCH_HOME": CACHE_ROOT / "torch",
}
for variable, folder in CACHE_DIRS.items():
    os.environ[variable] = str(folder)
SIMULATED_HOST_ENV = "COLA_TEST_SIMULATED_HOST"

# Imported after the offline switches above: huggingface_hub reads them when first imported.
from recipe.runtime import hardware  # noqa: E402
from recipe.runtime.hardware import Hardware  # noqa: E402

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Words for generated sentences. "zork" is the marker: a sentence containing it is unacceptable, a
# rule a 2-layer model learns in a few epochs, so a test can demand real learning (high MCC).
WORDS = (
    "the a cat dog bird fish man woman child teacher sat ran saw liked ate found gave took "
    "big small red old new happy quickly slowly on in under with to from and but that who "
    "john mary book tree house ball car apple it they she he we"
).split()
MARKER = "zork"
VOCAB = SPECIAL_TOKENS + WORDS + [MARKER, ".", ",", '"', "'", "?", "!", "##s", "##ed", "##ing"]


def write_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer, hidden-32 BERT and its WordPiece tokenizer to `folder` (save_pretrained)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    # vocab= takes the mapping; BertTokenizerFast(vocab_file=...) would silently map every word to [UNK].
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(VOCAB)})
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_sentence(rng: random.Random, acceptable: bool) -> str:
    """A generated sentence; unacceptable ones carry the marker word somewhere."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
    if not acceptable:
        words.insert(rng.randint(0, len(words)), MARKER)
    return " ".join(words).capitalize() + "."


def cola_rows(n: int, seed: int, source: str = "gen1") -> list[tuple[str, int, str, str]]:
    """`n` CoLA rows (source, label, mark, sentence) about 70% acceptable, like CoLA."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = 1 if rng.random() < 0.7 else 0
        rows.append((source, label, "" if label else "*", make_sentence(rng, bool(label))))
    return rows


def write_tsv(path: Path, rows, final_newline: bool = True) -> Path:
    """Write CoLA rows as a headerless 4-column TSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(str(field) for field in row) for row in rows)
    path.write_text(text + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def write_cola_release(
    folder: Path, n_train: int = 200, n_dev: int = 60, n_ood: int | None = 50, seed: int = 0
) -> Path:
    """A CoLA release folder (raw/*.tsv) with the real data's quirks: quotes in sentences, empty
    marks, and an out-of-domain file with no final newline."""
    train = cola_rows(n_train, seed)
    train[0] = ("gj04", 1, "", 'Susan whispered "shut up" to the dog.')
    write_tsv(folder / "raw" / "in_domain_train.tsv", train)
    write_tsv(folder / "raw" / "in_domain_dev.tsv", cola_rows(n_dev, seed + 1))
    if n_ood is not None:
        write_tsv(
            folder / "raw" / "out_of_domain_dev.tsv", cola_rows(n_ood, seed + 2, "clc95"), final_newline=False
        )
    return folder


# Simulated machines (recipe/runtime/hardware.py's view of the host). The suite sees PLAIN_CPU unless a test asks
# for another, so what the tests check does not depend on the CPU or GPU of the machine they run on.
PLAIN_CPU = Hardware(
    device_type="cpu",
    cpu_count=2,
    cpu_flags=frozenset({"sse4_2", "avx", "avx2", "fma"}),
    cpu_capability="AVX2",
    cpu_model="simulated AVX2-only CPU",
)
BF16_CPU = Hardware(
    device_type="cpu",
    cpu_count=2,
    cpu_flags=frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"}),
    cpu_capability="AVX512",
    cpu_model="simulated AVX-512 BF16 CPU",
)
BF16_CARD = Hardware(
    device_type="cuda",
    cpu_count=16,
    cuda_name="simulated A100",
    cuda_capability=(8, 0),
    cuda_bf16=True,
    cuda_count=1,
)
FP16_CARD = Hardware(
    device_type="cuda", cpu_count=8, cuda_name="simulated V100", cuda_capability=(7, 0), cuda_count=1
)


def on_cpu(machine: Hardware) -> Hardware:
    """What `detect_hardware(use_cpu=True)` sees on `machine`: its CPU, with no accelerator."""
    return Hardware(
        device_type="cpu",
        cpu_count=machine.cpu_count,
        cpu_flags=machine.cpu_flags,
        cpu_capability=machine.cpu_capability,
        cpu_model=machine.cpu_model,
    )


@pytest.fixture(autouse=True)
def pinned_hardware(monkeypatch):
    """Every test sees PLAIN_CPU; `pinned_hardware(BF16_CPU)` inside a test switches the simulation.
    `use_cpu=True` (`--use_cpu`) is answered as the real layer answers it: the machine's CPU."""

    def pin(machine: Hardware) -> Hardware:
        monkeypatch.setattr(
            hardware, "detect_hardware", lambda use_cpu=False: on_cpu(machine) if use_cpu else machine
        )
        return machine

    pin(PLAIN_CPU)
    return pin


# The code whose view of the host the simulation changes; libraries keep the real answers (the Trainer saves
# CUDA random states when torch says a GPU is there, which a CPU build cannot do).
RECIPE_MODULES = ("recipe", "run_cola", "gpu_bench", "run_bench", "tutorial_loop", "results_md")
SIMULATED_CPUINFO = "model name\t: simulated host CPU with AMX\nflags\t\t: sse4_2 avx avx2 fma avx512f avx512_bf16 amx_tile amx_bf16\n"


def asked_by_recipe() -> bool:
    """True when the torch function being answered was called from the recipe's own code."""
    name = sys._getframe(2).f_globals.get("__name__", "")
    return name.split(".")[0] in RECIPE_MODULES


def simulate_gpu_host(patch: pytest.MonkeyPatch, cpuinfo: Path) -> None:
    """Make the host look like an A100 box with an AMX CPU to the recipe's own code (see the module doc)."""
    import torch

    answers = {
        "is_available": lambda *a, **k: True,
        "is_bf16_supported": lambda *a, **k: True,
        "device_count": lambda *a, **k: 1,
        "get_device_name": lambda *a, **k: "simulated host A100",
        "get_device_capability": lambda *a, **k: (8, 0),
        "get_device_properties": lambda *a, **k: SimpleNamespace(
            name="simulated host A100", total_memory=80 << 30
        ),
    }
    for name, answer in answers.items():
        real = getattr(torch.cuda, name)

        def answered(*args, _real=real, _answer=answer, **kwargs):
            return _answer(*args, **kwargs) if asked_by_recipe() else _real(*args, **kwargs)

        patch.setattr(torch.cuda, name, answered)
    real_capability = torch.backends.cpu.get_cpu_capability
    patch.setattr(
        torch.backends.cpu,
        "get_cpu_capability",
        lambda: "AVX512" if asked_by_recipe() else real_capability(),
    )
    cpuinfo.write_text(SIMULATED_CPUINFO, encoding="utf-8")
    patch.setattr(hardware, "CPUINFO_PATH", cpuinfo)
    patch.setattr(hardware.read_cpuinfo, "__defaults__", (cpuinfo,))


@pytest.fixture(scope="session", autouse=True)
def simulated_host():
    """COLA_TEST_SIMULATED_HOST=cuda: the whole session runs on a simulated GPU host (module doc)."""
    host = os.environ.get(SIMULATED_HOST_ENV, "")
    if host not in ("", "cuda"):
        raise pytest.UsageError(f"{SIMULATED_HOST_ENV}={host!r}: the simulated host is 'cuda' (or unset).")
    with pytest.MonkeyPatch.context() as patch:
        if host:
            simulate_gpu_host(patch, CACHE_ROOT / "cpuinfo")
        yield host


def pytest_unconfigure(config):
    shutil.rmtree(CACHE_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def cola_dir(tmp_path) -> Path:
    return write_cola_release(tmp_path / "cola_public")


# The shared finished run's truncation length: not the default 64, so a reader must take the run's own.
FINISHED_RUN_MAX_SEQ_LENGTH = 12


@pytest.fixture(scope="session")
def finished_run(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    """One finished tiny run, (output folder, data folder), for the tests that only read what a run wrote:
    one epoch, no checkpoints, max_seq_length 12, report written, a release without out_of_domain_dev (so
    the per-batch chart falls back to in_domain_dev). A test that writes into the folder must copy it."""
    import run_cola
    from recipe.training.arguments import parse_args

    root = tmp_path_factory.mktemp("finished-run")
    data = write_cola_release(root / "cola", n_train=120, n_dev=70, n_ood=None, seed=4)
    out = root / "out"
    flags = ["--num_train_epochs", "1", "--save_strategy", "no"]
    flags += ["--max_seq_length", str(FINISHED_RUN_MAX_SEQ_LENGTH)]
    run_cola.main(*parse_args(fast_args(tiny_bert, data, out, *flags)))
    return out, data


def fast_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """Command-line flags for a quick CPU run of the tiny model."""
    return [
        "--model_name_or_path",
        str(model),
        "--data_dir",
        str(data),
        "--output_dir",
        str(out),
        "--use_cpu",
        "--num_train_epochs",
        "2",
        "--learning_rate",
        "1e-3",
        "--per_device_train_batch_size",
        "16",
        "--logging_steps",
        "5",
        "--disable_tqdm",
        "true",
        *extra,
    ]
