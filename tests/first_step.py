"""The first optimizer step each in-process run took: what tells a resume from a restart.

A restart and a resume from the same seed end on the same weights, so the final model cannot tell them
apart. The run itself can: a run resumed from checkpoint-N takes step N + 1 first, a fresh start step 1.
"""

from __future__ import annotations

from typing import Any

import pytest
from transformers import TrainerCallback

import run_cola


class FirstStepRecorder(TrainerCallback):
    """Records `state.global_step` at the end of the first optimizer step this Trainer runs."""

    def __init__(self) -> None:
        self.first_step: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.first_step is None:
            self.first_step = state.global_step


def record_first_steps(monkeypatch: pytest.MonkeyPatch) -> list[FirstStepRecorder]:
    """From now on every `run_cola.main` in this test gets a recorder; returns them, one a run that built
    a Trainer, in order (`[r.first_step for r in recorders]`; None for a run that took no step)."""
    recorders: list[FirstStepRecorder] = []
    unprobed = run_cola.build_trainer

    def build_and_record(*args: Any, **kwargs: Any) -> Any:
        trainer = unprobed(*args, **kwargs)
        recorders.append(FirstStepRecorder())
        trainer.add_callback(recorders[-1])
        return trainer

    monkeypatch.setattr(run_cola, "build_trainer", build_and_record)
    return recorders
