"""The names under which a run logs the numbers that other code reads back: one spelling each.

The model logs them (``src/models/classifier.py``), the loggers plot and summarise them
(``src/loggers/``), the console's epoch line shows them, and the readers of finished runs find them in
``metrics.csv`` (``src/runs/metrics.py``, ``src/runs/sweeps.py``, ``src/reports/``). This module imports
nothing, so that every layer (the model and the loggers sit below ``src/runs/``) can name a metric without
an upward import.
"""

from __future__ import annotations

#: Top-1 accuracy on the validation views, logged once per validation: the scheduler's and the checkpoint's
#: monitor, and what a sweep counts as the job's validated epochs.
VAL_ACC = "val/acc"
#: The best ``val/acc`` so far.
VAL_ACC_BEST = "val/acc_best"
#: Top-1 accuracy of the test run after fitting (the ten-crop views).
TEST_ACC = "test/acc"
#: Epochs trained when the conv1 kernels were scored (0: at initialisation): the x-axis of every
#: ``kernels/*`` curve, logged beside the scores (``src/callbacks/tower_kernels.py``).
EPOCHS_TRAINED = "kernels/epochs_trained"
