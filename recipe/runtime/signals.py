"""Stop cleanly on SIGTERM or Ctrl-C: save a checkpoint at the next step boundary, then exit.

Preemptible machines and schedulers (Slurm, Kubernetes) send SIGTERM some seconds before SIGKILL; a
user presses Ctrl-C. Either way the run should leave a checkpoint that the same command resumes from,
not a half-finished step. `GracefulStopCallback` installs handlers for SIGTERM and SIGINT while
`trainer.train()` runs; the first signal only sets a flag, and at the end of the current optimizer step
the callback asks the Trainer (through its own `TrainerControl`) to save and stop. A second Ctrl-C
aborts immediately, for when the step itself hangs.

The exit status of an interrupted run is 128 + the signal number (130 for SIGINT, 143 for SIGTERM),
the shell's convention for "ended by that signal": `python run_cola.py ... && next-step` does not
continue as if training had finished, and a scheduler sees a terminated job it can requeue.

With several processes a signal may reach only one of them (a `kill` of one PID, a node's scheduler).
At every step boundary, at each epoch's end and at the end of training the processes all-reduce the
signal they hold (the highest number wins, 0 = none), so every rank stops at the same step, the one
checkpoint is saved together, and every rank exits with the same status.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Training stopped early on a signal, after saving a checkpoint; the same command resumes it."""

    def __init__(self, signum: int, checkpoint: str | None) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        saved = f"saved {checkpoint}" if checkpoint else "no checkpoint was saved"
        super().__init__(
            f"Training stopped on {name}; {saved}. To resume, run the same command again with the same "
            "--output_dir: it continues from the last checkpoint there (or pass --resume_from_checkpoint PATH)."
        )

    @property
    def exit_code(self) -> int:
        """128 + the signal number: the shell's code for a process ended by that signal."""
        return 128 + self.signum


class GracefulStopCallback(TrainerCallback):
    """Turn the first SIGTERM/SIGINT during training into "save a checkpoint and stop" at the step's end.

    Handlers are installed in `on_train_begin` and the previous ones restored in `on_train_end`, so
    outside `trainer.train()` the signals behave as usual. `stop_signal` is the signal received, if any.
    """

    def __init__(self) -> None:
        self.stop_signal: int | None = None
        self.saved_checkpoint: str | None = None
        self._previous_handlers: dict[int, Any] = {}

    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        """First signal: ask for a stop at the next step boundary. Second: abort now."""
        if self.stop_signal is not None:
            logger.error("Second %s: aborting now, without saving.", signal.Signals(signum).name)
            self.restore_handlers()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)  # the default action (terminate) now that our handler is gone
            return
        self.stop_signal = signum
        logger.warning(
            "Received %s: saving a checkpoint at the end of this step, then stopping (press Ctrl-C again "
            "to abort without saving).",
            signal.Signals(signum).name,
        )

    def install_handlers(self) -> None:
        """Handle SIGTERM and SIGINT here (only possible from the main thread; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            logger.warning("Not in the main thread: SIGTERM/Ctrl-C will not save a checkpoint first.")
            return
        for signum in HANDLED_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self.handle_signal)

    def restore_handlers(self) -> None:
        """Put back the handlers that were there before training."""
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous_handlers.clear()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.stop_signal = None
        self.saved_checkpoint = None
        self.install_handlers()

    def agree_across_processes(self, args: TrainingArguments) -> None:
        """Make `stop_signal` the one any process received (a collective: every rank calls it together)."""
        if args.world_size <= 1 or not torch.distributed.is_initialized():
            return
        # Only the signal number travels, as a one-element tensor on this rank's device (NCCL: the GPU).
        flag = torch.tensor([self.stop_signal or 0], dtype=torch.int64, device=args.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        agreed = int(flag.item()) or None
        if agreed is not None and self.stop_signal is None:
            logger.warning(
                "Process %d: another process received %s; stopping at this step with it.",
                args.process_index,
                signal.Signals(agreed).name,
            )
        self.stop_signal = agreed

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.agree_across_processes(args)
        if self.stop_signal is not None:
            # The Trainer saves (checkpoint-N with optimizer, scheduler, RNG and trainer state) right
            # after this callback, then leaves its loops.
            control.should_save = True
            control.should_training_stop = True

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.stop_signal is not None:
            self.saved_checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.agree_across_processes(args)
        if self.stop_signal is None:
            return
        if self.saved_checkpoint is not None:
            # Already saved at the step boundary; an end-of-epoch evaluation of a partial epoch would
            # only add a log entry that an uninterrupted run does not have.
            control.should_evaluate = False
            control.should_save = False
        else:
            # The signal came after the epoch's last step ended: the epoch boundary is the next step
            # boundary (its usual evaluation runs, as in an uninterrupted run).
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # A signal after the last step: every rank raises TrainingInterrupted, or none does. The
        # collective also keeps a stopping rank from exiting while the main one still writes the checkpoint.
        self.agree_across_processes(args)
        self.restore_handlers()


def raise_if_interrupted(callback: GracefulStopCallback) -> None:
    """After `trainer.train()` returns: stop the run here if it returned because of a signal.

    Raises:
        TrainingInterrupted: a signal was received; it names the checkpoint saved (cli exits 128 + signum).
    """
    if callback.stop_signal is not None:
        raise TrainingInterrupted(callback.stop_signal, callback.saved_checkpoint)
