"""Save ``checkpoints/last.ckpt`` and stop on SIGTERM, which a cluster sends before it preempts a job, and on
Ctrl-C (SIGINT), which a user sends.

What Lightning 2.6 does by itself (``trainer/connectors/signal_connector.py``): during ``fit``/``test`` it
installs a SIGTERM handler that only sets ``trainer.received_sigterm`` (and, in DDP, broadcasts from inside
the handler and forwards the signal to the ranks it started). The loops then raise ``SIGTERMException`` (a
``SystemExit`` with code 0) at the next training batch end, or at the next batch of a validation or test
loop. It saves a checkpoint only under SLURM with auto-requeue, on SIGUSR1. So, without SLURM, a SIGTERM
ends the run with exit code 0, mid-validation perhaps, and nothing to resume from.

This callback takes over SIGTERM from ``on_train_start`` (after Lightning installed its handler and after
the sanity check) to the end of ``fit`` (Lightning's teardown puts back the handlers it found):

* the handler only records the request;
* at the end of each training batch the ranks agree (one all-reduce of a flag; the signal may reach rank 0
  only, or every rank) and, if any rank was asked, all of them save ``<dirpath>/last.ckpt`` (written to a
  temporary file beside it, then renamed into place, so a SIGKILL during the write leaves the previous
  ``last.ckpt`` whole) and raise ``Preempted``. ``src/train.py`` fits inside ``exit_when_stopped``, which
  then finishes the W&B run (marked preempting, exit code 143), ends the process group and exits with
  ``PREEMPTED_EXIT_CODE`` (143, 128 + SIGTERM, what a shell reports for a process SIGTERM ended); other
  ranks exit 0, so Lightning's child process watcher does not kill rank 0 while it finishes;
* a SIGTERM during validation is served at the next training batch end, so validation, its metrics and
  the epoch's checkpoints complete first; one during the last epoch's validation, after the last batch,
  lets ``fit`` finish and ``stop_before_test`` exits with 143 before the test (resuming then only tests).

Ctrl-C is served the same way, from ``on_train_start`` to the end of ``fit`` (the handler Lightning found is
put back in ``teardown``), and exits with ``INTERRUPTED_EXIT_CODE`` (130, 128 + SIGINT). Without it Lightning
catches the ``KeyboardInterrupt`` and exits with 1, saving nothing. A second Ctrl-C before the save is done
raises ``StoppedAtOnce`` at once, for a user who will not wait: nothing is saved (a checkpoint being written
is dropped whole), and the process exits with 130 too, with one line (a ``KeyboardInterrupt`` would end in
Lightning's "Detected KeyboardInterrupt" and exit code 1; a terminal's Ctrl-C reaches every rank, and each
stops so). Loader worker processes ignore SIGINT and SIGTERM
(``src/data/datamodule.py``): a terminal, SLURM and ``timeout`` signal the whole process group, and a
worker that died of it would fail the batch the main process still has to finish.

The saved state is "batch k of epoch e done": ``ckpt_path=last`` resumes inside the epoch with its
remaining batches (Lightning warns that the loader is not resumable: the resumed part of the epoch draws a
new random order, so some images of that epoch are seen twice and some not at all). The step metrics of
batch k are not logged (the loop logs them after the hook that stops it); nothing is logged twice.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.runs.checkpoint_io import CheckpointWriteError
from src.runs.folders import last_checkpoint
from src.utils.console import say
from src.utils.exits import INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE

SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C (SIGINT)"}


def exit_code_of(signum: int) -> int:
    return INTERRUPTED_EXIT_CODE if signum == signal.SIGINT else PREEMPTED_EXIT_CODE


class Preempted(SIGTERMException):
    """Raised on every rank after the preemption checkpoint is saved; exits with 143 (130 after Ctrl-C) if
    not caught."""

    def __init__(self, checkpoint: Path, signum: int = signal.SIGTERM) -> None:
        super().__init__(exit_code_of(signum))
        self.checkpoint = checkpoint
        self.signum = signum


class StoppedAtOnce(SIGTERMException):
    """Raised by a second Ctrl-C, wherever the process is: stop now, saving nothing; exits with 130."""

    def __init__(self) -> None:
        super().__init__(INTERRUPTED_EXIT_CODE)


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM or Ctrl-C: save ``<dirpath>/<filename>`` at the next training batch end and stop (module
    docstring).

    Args:
        dirpath: the checkpoint folder (``${paths.output_dir}/checkpoints``, as ``ModelCheckpoint``'s, so
            ``ckpt_path=last`` finds the file).
        filename: ``last.ckpt``, the file ``ModelCheckpoint(save_last=True)`` writes too.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.requested = False  # a SIGTERM or SIGINT arrived (on this rank) during fit
        self.signum: int = signal.SIGTERM  # which one (SIGTERM when another rank asked)
        self.saved: Path | None = None  # the checkpoint written on preemption
        self._previous_sigint: Any = None  # the SIGINT handler to put back after fit

    @property
    def path(self) -> Path:
        return self.dirpath / self.filename

    @property
    def exit_code(self) -> int:
        """143 after SIGTERM, 130 after Ctrl-C."""
        return exit_code_of(self.signum)

    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested and self.signum == signal.SIGINT:
            raise StoppedAtOnce  # the second Ctrl-C: stop now
        if not self.requested:
            rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
            name = SIGNAL_NAMES.get(signum, str(signum))
            message = (
                f"[rank {rank}] {name}: saving {self.path} at the end of this training batch, then stopping"
            )
            if signum == signal.SIGINT:
                message += " (Ctrl-C again to stop at once, without saving)"
            say(message, error=True)
            self.signum = signum
        self.requested = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.requested = self.requested or trainer.received_sigterm  # one that came during the sanity check
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle_signal)
            self._previous_sigint = signal.signal(signal.SIGINT, self.handle_signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Give Ctrl-C back to whoever had it (Lightning restores SIGTERM's handler itself)."""
        if self._previous_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.teardown(trainer, pl_module, "fit")  # fit ended by an exception (Preempted included)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Every rank calls this every batch, so the all-reduce inside pairs up.
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        self.requested = True
        self.save(trainer)
        for logger in trainer.loggers:
            mark_preempting = getattr(getattr(logger, "experiment", None), "mark_preempting", None)
            if trainer.is_global_zero and callable(mark_preempting):
                mark_preempting()
        raise Preempted(self.path, self.signum)

    def save(self, trainer: L.Trainer) -> None:
        """Write the checkpoint beside its final name, then rename it into place (all ranks take part)."""
        partial = self.dirpath / f".{self.filename}.partial"
        try:
            trainer.save_checkpoint(partial, weights_only=False)  # every rank: collective; rank 0 writes
        except CheckpointWriteError as failed:  # named after the file it was to become
            raise CheckpointWriteError(self.path, failed.cause) from failed.cause
        if trainer.is_global_zero:
            os.replace(partial, self.path)
            say(f"saved {self.path} (epoch {trainer.current_epoch}, step {trainer.global_step})")
        trainer.strategy.barrier("preemption_checkpoint")
        self.saved = self.path


def stop_before_test(trainer: L.Trainer) -> None:
    """After ``fit``: a SIGTERM or Ctrl-C that came after the last training batch (during the last
    validation) leaves training complete and checkpointed; stop before the test, on every rank alike."""
    preemption = next((cb for cb in trainer.callbacks if isinstance(cb, PreemptionCheckpoint)), None)
    stop = preemption is not None and preemption.requested
    if preemption is not None and trainer.strategy.reduce_boolean_decision(stop, all=False):
        raise SIGTERMException(preemption.exit_code)


@contextmanager
def exit_when_stopped(
    trainer: L.Trainer, output_dir: str | Path, close: Callable[[int], None]
) -> Iterator[None]:
    """After a SIGTERM or Ctrl-C in the block: ``close(exit code)`` (the W&B run and the process group), say
    how to go on, and exit.

    Rank 0 exits with ``PREEMPTED_EXIT_CODE`` (143) after SIGTERM, ``INTERRUPTED_EXIT_CODE`` (130) after
    Ctrl-C; other ranks exit 0, so that Lightning's watcher of the processes it started does not kill rank 0
    while it finishes.
    """
    try:
        yield
    except SIGTERMException as stop:
        code = INTERRUPTED_EXIT_CODE if stop.code == INTERRUPTED_EXIT_CODE else PREEMPTED_EXIT_CODE
        go_on = f"python src/train.py hydra.run.dir={output_dir} ckpt_path=last"
        if isinstance(stop, StoppedAtOnce):
            last = last_checkpoint(Path(output_dir))  # an earlier epoch's, if any
            then = f"to go on from {last}: {go_on}" if last.is_file() else "run the command again to restart"
            line = f"stopped at once by a second Ctrl-C (exit code {code}), saving nothing; {then}"
        else:
            name = "Ctrl-C" if code == INTERRUPTED_EXIT_CODE else "SIGTERM"
            line = f"stopped by {name} (exit code {code}); to go on: {go_on}"
        if trainer.is_global_zero:
            say(line, error=True)
        close(code)
        raise SystemExit(code if trainer.is_global_zero else 0) from None
