"""`run_cola.py` with probes, for the two-process tests (tests/test_distributed_signals.py); not a test.

Launched by `accelerate launch` in place of run_cola.py. Environment variables switch the probes on:

- PROBE_SIGNAL_RANK, PROBE_SIGNAL_STEP: that rank sends itself SIGTERM at the end of that optimizer step
  (the signal a scheduler or `kill PID` would deliver to one process);
- PROBE_DUMP_STEP, PROBE_DUMP_DIR: at the end of that step every rank saves its own weights as rank<N>.pt;
- PROBE_NO_SYNC=1: DistributedDataParallel skips its gradient all-reduce (the bug the sync test must catch).
- PROBE_FIRST_STEP_DIR: every rank writes the first optimizer step it takes to rank<N>.first_step there (a
  run resumed from checkpoint-N takes step N + 1 first, a fresh start step 1).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import run_cola  # noqa: E402
from recipe.runtime.signals import GracefulStopCallback  # noqa: E402

unprobed_step_end = GracefulStopCallback.on_step_end


def probed_step_end(self: GracefulStopCallback, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
    first_step_dir = os.environ.get("PROBE_FIRST_STEP_DIR")
    if (
        first_step_dir
        and not (record := Path(first_step_dir) / f"rank{args.process_index}.first_step").exists()
    ):
        record.write_text(str(state.global_step))
    if str(state.global_step) == os.environ.get("PROBE_DUMP_STEP"):
        weights = {name: tensor.detach().clone() for name, tensor in kwargs["model"].state_dict().items()}
        torch.save(weights, Path(os.environ["PROBE_DUMP_DIR"]) / f"rank{args.process_index}.pt")
    if str(state.global_step) == os.environ.get("PROBE_SIGNAL_STEP") and str(
        args.process_index
    ) == os.environ.get("PROBE_SIGNAL_RANK"):
        os.kill(os.getpid(), signal.SIGTERM)  # handled (a flag is set) before the next line runs
    unprobed_step_end(self, args, state, control, **kwargs)


GracefulStopCallback.on_step_end = probed_step_end

if os.environ.get("PROBE_NO_SYNC") == "1":
    unsynced_forward = torch.nn.parallel.DistributedDataParallel.forward

    def forward_without_sync(
        self: torch.nn.parallel.DistributedDataParallel, *args: Any, **kwargs: Any
    ) -> Any:
        self.require_backward_grad_sync = False  # what DDP's no_sync() sets: no all-reduce in backward
        return unsynced_forward(self, *args, **kwargs)

    torch.nn.parallel.DistributedDataParallel.forward = forward_without_sync

if __name__ == "__main__":
    sys.exit(run_cola.cli())
