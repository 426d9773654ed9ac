"""Detect what this machine does fast, and turn it into Trainer settings and a data collator.

The settings are plain `TrainingArguments` values that `recipe.arguments.parse_args` installs as
defaults under the `--config` file and the command line, so a user's explicit flag always wins.

- Every device: length-grouped training batches (`train_sampling_strategy="group_by_length"`), so a
  batch is padded to a length close to its sentences' own, and the fused AdamW kernel.
- CUDA: bf16 autocast where the card supports it (else fp16), TF32 matmuls on Ampere and newer,
  dataloader workers with pinned memory, and batches padded to a multiple of 8 (tensor-core tiles).
- CPU: bf16 only when the processor computes it natively (AVX-512 BF16 or AMX); elsewhere a bf16
  matrix product is emulated and runs far slower than fp32, so fp32 it is. No dataloader workers: on a
  few cores a worker process takes cycles from the matmuls, and collating CoLA batches is cheap.
  Evaluation batches cut at 1024 padded tokens once sorted by length (`eval_max_tokens`,
  recipe/eval_order.py): 606 sentences/s against 563 with 32 sentences a batch (2-core machine,
  all-MiniLM-L6-v2, validation + in-domain dev, `python bench/eval_batches.py`, medians of 3 rounds). Where
  that is off (an explicit --per_device_eval_batch_size, --pad_to_max_length), batches of 32: sorted by
  length, a small batch is padded to little more than its own sentences, while a large one spans more
  lengths (`Trainer.predict`, in-domain dev: 500 sentences/s at 32, 490 at 64, 410 at 128).
- CPU training also keeps freed memory in the process (`keep_freed_memory_in_process`, below).
Two speed-ups that are not Trainer settings live in their own modules, each with a flag: the last encoder
layer computed for [CLS] only (recipe/cls_only.py) and AdamW skipping untouched word-embedding rows on CPU
(recipe/embedding_rows.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.training_args import OptimizerNames

logger = logging.getLogger(__name__)

CPUINFO_PATH = Path("/proc/cpuinfo")
# /proc/cpuinfo flags that mean the CPU multiplies bf16 in hardware: AVX-512 BF16 (Cooper Lake, Zen 4 and
# later) or AMX tiles (Sapphire Rapids and later).
CPU_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Padding to a multiple of 8 lets fp16/bf16 matmuls use whole tensor-core tiles on NVIDIA GPUs; on a
# CPU it would only add padded positions.
GPU_PAD_TO_MULTIPLE_OF = 8
# Dataloader workers on a GPU machine: enough to collate ahead of the GPU, few enough to leave cores.
MAX_GPU_DATALOADER_WORKERS = 4
# Evaluation batch size: GPUs want large batches to fill the card; on a CPU the padding of a sorted batch
# grows with its size faster than the larger matmuls gain (module docstring).
GPU_EVAL_BATCH_SIZE = 128
CPU_EVAL_BATCH_SIZE = 32
# Padded tokens per sorted evaluation batch on a CPU (module docstring); GPUs keep batches of 128 sentences
# (not measured with a token budget: no GPU here).
CPU_EVAL_MAX_TOKENS = 1024
# glibc mallopt(3) parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_MAX.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_FREED_BYTES = 1 << 30  # free memory at the top of the heap is returned to the OS only above 1 GiB
FUSED_ADAMW = "adamw_torch_fused"
MIXED_PRECISION_KEYS = frozenset({"bf16", "fp16"})


@dataclass(frozen=True)
class Hardware:
    """What the recipe needs to know about the device it trains on."""

    device_type: str  # "cuda", "mps" or "cpu"
    cpu_count: int
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cpu_capability: str = ""  # torch's SIMD level for CPU kernels, e.g. "AVX2", "AVX512"
    cuda_name: str = ""
    cuda_capability: tuple[int, int] = (0, 0)
    cuda_bf16: bool = False

    @property
    def cpu_native_bf16(self) -> bool:
        """True when the processor has bf16 arithmetic in hardware (AVX-512 BF16 or AMX)."""
        return bool(self.cpu_flags & CPU_NATIVE_BF16_FLAGS)

    def describe(self) -> str:
        """One line for logs and benchmark reports."""
        if self.device_type == "cuda":
            major, minor = self.cuda_capability
            return f"CUDA {self.cuda_name} (sm_{major}{minor}, bf16={'yes' if self.cuda_bf16 else 'no'})"
        native = sorted(self.cpu_flags & CPU_NATIVE_BF16_FLAGS)
        return (
            f"{self.device_type.upper()}: {self.cpu_count} cores, torch kernels {self.cpu_capability or '?'}, "
            f"native bf16: {', '.join(native) if native else 'no'}"
        )


def read_cpu_flags(path: Path = CPUINFO_PATH) -> frozenset[str]:
    """The feature flags of the first processor in /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return frozenset(value.split())
    return frozenset()


def detect_hardware(use_cpu: bool = False) -> Hardware:
    """Look at the machine: the accelerator the Trainer will pick (unless `use_cpu`) and the CPU's flags."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    common: dict[str, Any] = {
        "cpu_count": len(affinity) if affinity else os.cpu_count() or 1,
        "cpu_flags": read_cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if not use_cpu and torch.cuda.is_available():
        return Hardware(
            device_type="cuda",
            cuda_name=torch.cuda.get_device_name(0),
            cuda_capability=torch.cuda.get_device_capability(0),
            cuda_bf16=torch.cuda.is_bf16_supported(),
            **common,
        )
    if not use_cpu and torch.backends.mps.is_available():
        return Hardware(device_type="mps", **common)
    return Hardware(device_type="cpu", **common)


def fast_training_defaults(hardware: Hardware) -> dict[str, Any]:
    """`TrainingArguments` values that make training fast on `hardware` (explicit flags override them)."""
    defaults: dict[str, Any] = {
        # Batches of similar length: each is padded to little more than its own sentences.
        "train_sampling_strategy": "group_by_length",
    }
    if FUSED_ADAMW in {name.value for name in OptimizerNames}:
        defaults["optim"] = FUSED_ADAMW  # one kernel over all parameters instead of one per tensor
    if hardware.device_type == "cuda":
        if hardware.cuda_bf16:
            defaults["bf16"] = True
        else:
            defaults["fp16"] = True  # pre-Ampere cards: fp16 autocast with loss scaling
        if hardware.cuda_capability >= (8, 0):
            defaults["tf32"] = True  # the fp32 matmuls left outside autocast use TF32 tensor cores
        defaults["per_device_eval_batch_size"] = GPU_EVAL_BATCH_SIZE
        defaults["dataloader_num_workers"] = min(MAX_GPU_DATALOADER_WORKERS, max(hardware.cpu_count // 2, 0))
        defaults["dataloader_pin_memory"] = True
    elif hardware.device_type == "cpu":
        # bf16 autocast only where the CPU computes bf16 natively; emulated bf16 is >100x slower here.
        defaults["bf16"] = hardware.cpu_native_bf16
        defaults["per_device_eval_batch_size"] = CPU_EVAL_BATCH_SIZE
        defaults["dataloader_num_workers"] = 0
        defaults["dataloader_pin_memory"] = False  # pinned memory only helps copies to a GPU
    return defaults


def fast_data_defaults(hardware: Hardware) -> dict[str, Any]:
    """`DataArguments` values that make evaluation fast on `hardware` (explicit flags override them)."""
    if hardware.device_type == "cpu":
        return {"eval_max_tokens": CPU_EVAL_MAX_TOKENS}
    return {}


def keep_freed_memory_in_process(device_type: str) -> bool:
    """On a CPU under glibc, keep freed blocks in the heap instead of handing them back to the OS.

    glibc serves every allocation above 32 MiB with its own mmap and unmaps it on free. A BERT's
    word-embedding gradient is such a block (30522 x 384 floats = 45 MiB for MiniLM, 90 MiB for
    bert-base), allocated and freed at every step, so each step page-faults it in again: measured on the
    2-core machine, 8,300 page faults per training step, 4% of the step time (all-MiniLM-L6-v2, batch 32).
    With mmap off and a high trim threshold, freed blocks are reused: page faults per step fall to ~0.
    (That measurement predates the sparse embedding gradient of recipe/embedding_rows.py, which avoids the
    dense block where it applies; it is still there with weight decay on the table, under torch.compile or
    with --skip_untouched_embedding_rows false.)
    What it costs: the process keeps up to 1 GiB of freed memory instead of returning it. The numerics
    are untouched. Nothing to do on GPUs (the tensors live in the CUDA caching allocator) or without glibc.

    Returns:
        True when the setting was applied.
    """
    if device_type != "cpu" or not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    if applied:
        logger.info("CPU: freed memory stays in the process (glibc mallopt), no page faults per step.")
    return applied


def without_explicit(defaults: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """`defaults` less every key the user set; choosing fp16 or bf16 also drops the other one (both
    cannot be on: `--fp16 true` on a bf16 card must not meet a default `bf16=True`)."""
    if explicit & MIXED_PRECISION_KEYS:
        explicit = explicit | MIXED_PRECISION_KEYS
    return {key: value for key, value in defaults.items() if key not in explicit}


def build_data_collator(tokenizer: PreTrainedTokenizerBase, device_type: str) -> DataCollatorWithPadding:
    """Pad each batch to its longest sentence (a no-op after `pad_to_max_length`); to a multiple of 8 on GPUs."""
    return DataCollatorWithPadding(
        tokenizer, pad_to_multiple_of=GPU_PAD_TO_MULTIPLE_OF if device_type == "cuda" else None
    )
