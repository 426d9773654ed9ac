"""`python run_cola.py env`: what a bug report needs, the machine, the library versions and the defaults
the recipe chooses here."""

from __future__ import annotations

import platform
import sys

import torch

# The module, not its names: tests pin the machine by replacing hardware.detect_hardware.
from recipe.runtime import hardware as hw
from recipe.runtime.versions import run_versions


def env_report(hardware: hw.Hardware | None = None) -> str:
    """What a bug report needs: the machine, the library versions and the defaults chosen here."""
    hardware = hardware or hw.detect_hardware()
    lines = ["## Machine", f"- platform: {platform.platform()}", f"- device: {hardware.describe()}"]
    lines.append(f"- CPU: {hardware.cpu_model or 'unknown'} ({hardware.cpu_count} cores usable)")
    shown = [flag for flag in hw.CPU_REPORTED_FLAGS if flag in hardware.cpu_flags]
    lines.append(
        f"- CPU flags that matter: {' '.join(shown) or 'none of ' + ', '.join(hw.CPU_REPORTED_FLAGS)}"
    )
    lines.append(f"- torch CPU kernels: {hardware.cpu_capability or '?'}")
    lines.append(f"- CPU computes bf16 natively: {'yes' if hardware.cpu_native_bf16 else 'no'}")
    if hardware.device_type == "cuda":
        major, minor = hardware.cuda_capability
        lines.append(
            f"- GPU: {hardware.cuda_count} x {hardware.cuda_name}, compute capability {major}.{minor}, "
            f"{hardware.cuda_memory_gib} GiB, bf16 {'yes' if hardware.cuda_bf16 else 'no'}"
        )
        lines.append(f"- CUDA (torch build): {torch.version.cuda}")
    else:
        lines.append(
            f"- GPU: none visible to torch (torch build CUDA: {torch.version.cuda or 'none, CPU build'})"
        )
    versions = {k: v for k, v in run_versions(hardware.describe()).items() if k != "machine"}
    lines += ["", "## Libraries", *(f"- {name}: {version}" for name, version in versions.items())]
    lines += ["", "## Defaults the recipe chooses on this machine (a config key or flag overrides each)"]
    lines += [f"- {key}: {value}" for key, value in sorted(hw.machine_defaults(hardware).items())]
    return "\n".join(lines) + "\n"


def env_cli(argv: list[str]) -> int:
    """`python run_cola.py env`: print `env_report()` (it takes no arguments)."""
    if argv:
        print(f"run_cola.py env takes no arguments; got {' '.join(argv)}", file=sys.stderr)
        return 2
    print(env_report(), end="")
    return 0
