"""The CSV log every logger config keeps: ``<run>/csv/version_N/metrics.csv``, the local record that the
reports and the sweep summary read (``src/runs/metrics.py``).

Lightning's ``CSVLogger`` (2.6) assumes one process writes a version's ``metrics.csv`` from start to end.
``trainer=ddp_spawn`` breaks that: ``trainer.fit`` and ``trainer.test`` each run in freshly spawned processes
that receive the main process's copy of the logger, whose writer never saw what ``fit`` wrote. Saving the
test metrics then fails (``ValueError: dict contains fields not in fieldnames``), and a writer built anew for
that version first deletes the file. :class:`CSVLog` writes with :class:`ContinuingWriter` instead, which
takes the columns of a ``metrics.csv`` already in its folder before it saves and never deletes one, so the
test rows land after the training rows of the same version. Anything else is Lightning's CSVLogger.
"""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, continuing the ``metrics.csv`` already in its folder instead of failing on it
    or deleting it."""

    def _check_log_dir_exists(self) -> None:
        """Keep what the folder holds (Lightning warns and deletes ``metrics.csv``): it is this version's."""

    def save(self) -> None:
        """Append the recorded rows, first taking the columns of the file on disk if this writer has not
        written it itself (so new columns rewrite the header over the union, and old rows keep theirs)."""
        if self.metrics and not self.metrics_keys and self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])
        super().save()


class CSVLog(CSVLogger):
    """Lightning's ``CSVLogger`` writing through :class:`ContinuingWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ContinuingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
