"""What this machine does fast, turned into stock `TrainingArguments` values and a data collator.

The values are plain `TrainingArguments` settings that `recipe.training.arguments.parse_args` installs as defaults
under the `--config` file and the command line (a user's explicit flag always wins), and records with the
source "machine" so a run's record and its reproduce command carry them explicitly.

- Every device: length-grouped training batches (`train_sampling_strategy="group_by_length"`), so a batch
  is padded to a length close to its sentences' own, and the fused AdamW kernel.
- CUDA: bf16 autocast where the card supports it (else fp16), TF32 matmuls on Ampere and newer,
  dataloader workers with pinned memory, batches padded to a multiple of 8 (tensor-core tiles), and
  evaluation batches of 128.
- CPU: bf16 autocast only where the processor computes bf16 natively (AVX-512 BF16 or AMX); elsewhere a
  bf16 matrix product is emulated and runs far slower than fp32, so fp32 it is. `use_cpu` is set on a CPU
  machine: transformers refuses bf16 without it when no GPU is there, and it names the device the run
  used. No dataloader workers (on a few cores a worker takes cycles from the matmuls; collating CoLA is
  cheap) and evaluation batches of 32 (sorted by length, a small batch is padded to little more than its
  own sentences).

recipe/runtime/env_report.py (`python run_cola.py env`) prints the machine, the library versions and these defaults.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.training_args import OptimizerNames

CPUINFO_PATH = Path("/proc/cpuinfo")
# Replaces /proc/cpuinfo's flags: tests pin subprocesses to AVX2; `COLA_CPU_FLAGS="avx2 avx512_bf16" ... env`.
CPU_FLAGS_ENV = "COLA_CPU_FLAGS"
# /proc/cpuinfo flags that mean the CPU multiplies bf16 in hardware: AVX-512 BF16 (Cooper Lake, Zen 4 and
# later) or AMX tiles (Sapphire Rapids and later).
CPU_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# The flags `env` reports: the SIMD levels torch's CPU kernels pick from, and the bf16/fp16 ones.
CPU_REPORTED_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "asimd",
    "sve",
    "bf16",
)
# Padding to a multiple of 8 lets fp16/bf16 matmuls use whole tensor-core tiles on NVIDIA GPUs; on a
# CPU it would only add padded positions.
GPU_PAD_TO_MULTIPLE_OF = 8
# Dataloader workers on a GPU machine: enough to collate ahead of the GPU, few enough to leave cores.
MAX_GPU_DATALOADER_WORKERS = 4
# Evaluation batch size: GPUs want large batches to fill the card; on a CPU the padding of a sorted batch
# grows with its size faster than the larger matmuls gain.
GPU_EVAL_BATCH_SIZE = 128
CPU_EVAL_BATCH_SIZE = 32
FUSED_ADAMW = "adamw_torch_fused"
MIXED_PRECISION_KEYS = frozenset({"bf16", "fp16"})


@dataclass(frozen=True)
class Hardware:
    """What the recipe needs to know about the device it trains on."""

    device_type: str  # "cuda", "mps" or "cpu"
    cpu_count: int
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cpu_capability: str = ""  # torch's SIMD level for CPU kernels, e.g. "AVX2", "AVX512"
    cpu_model: str = ""
    cuda_name: str = ""
    cuda_capability: tuple[int, int] = (0, 0)
    cuda_bf16: bool = False
    cuda_memory_gib: float = 0.0
    cuda_count: int = 0

    @property
    def cpu_native_bf16(self) -> bool:
        """True when the processor has bf16 arithmetic in hardware (AVX-512 BF16 or AMX)."""
        return bool(self.cpu_flags & CPU_NATIVE_BF16_FLAGS)

    def describe(self) -> str:
        """One line for logs, run records and benchmark reports."""
        if self.device_type == "cuda":
            major, minor = self.cuda_capability
            return (
                f"CUDA {self.cuda_name} x{max(self.cuda_count, 1)} (sm_{major}{minor}, "
                f"bf16={'yes' if self.cuda_bf16 else 'no'})"
            )
        native = sorted(self.cpu_flags & CPU_NATIVE_BF16_FLAGS)
        return (
            f"{self.device_type.upper()}: {self.cpu_model or 'unknown model'}, {self.cpu_count} cores, torch "
            f"kernels {self.cpu_capability or '?'}, native bf16: {', '.join(native) if native else 'no'}"
        )


def read_cpuinfo(path: Path = CPUINFO_PATH) -> tuple[frozenset[str], str]:
    """The feature flags and model name of the first processor in /proc/cpuinfo (empty where absent)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset(), platform.processor()
    flags: frozenset[str] | None = None
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and flags is None:  # x86 / ARM spelling
            flags = frozenset(value.split())
        elif key in ("model name", "Model", "cpu model") and not model:
            model = value.strip()
    return flags or frozenset(), model or platform.processor()


def detect_hardware(use_cpu: bool = False) -> Hardware:
    """Look at the machine: the accelerator the Trainer will pick (unless `use_cpu`) and the CPU's flags.

    Tests pin this function (tests/conftest.py), so the suite sees the same machine on every host.
    """
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    flags, model = read_cpuinfo()
    if os.environ.get(CPU_FLAGS_ENV) is not None:
        flags = frozenset(os.environ[CPU_FLAGS_ENV].split())
        model = f"{model or 'CPU'} (flags from ${CPU_FLAGS_ENV})"
    common: dict[str, Any] = {
        "cpu_count": len(affinity) if affinity else os.cpu_count() or 1,
        "cpu_flags": flags,
        "cpu_model": model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if not use_cpu and torch.cuda.is_available():
        return Hardware(
            device_type="cuda",
            cuda_name=torch.cuda.get_device_name(0),
            cuda_capability=torch.cuda.get_device_capability(0),
            cuda_bf16=torch.cuda.is_bf16_supported(),
            cuda_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
            cuda_count=torch.cuda.device_count(),
            **common,
        )
    if not use_cpu and torch.backends.mps.is_available():
        return Hardware(device_type="mps", **common)
    return Hardware(device_type="cpu", **common)


def machine_defaults(hardware: Hardware) -> dict[str, Any]:
    """Stock `TrainingArguments` values that make training fast on `hardware` (explicit settings win)."""
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
        # transformers refuses bf16 without a GPU unless use_cpu is set; it also names the device used.
        defaults["use_cpu"] = True
        # bf16 autocast only where the CPU computes bf16 natively; emulated bf16 is far slower than fp32.
        defaults["bf16"] = hardware.cpu_native_bf16
        defaults["per_device_eval_batch_size"] = CPU_EVAL_BATCH_SIZE
        defaults["dataloader_num_workers"] = 0
        defaults["dataloader_pin_memory"] = False  # pinned memory only helps copies to a GPU
    return defaults


def precision_name(training_args: Any) -> str:
    """ "bf16", "fp16" or "fp32": the autocast precision a TrainingArguments trains in."""
    if getattr(training_args, "bf16", False):
        return "bf16"
    if getattr(training_args, "fp16", False):
        return "fp16"
    return "fp32"


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
