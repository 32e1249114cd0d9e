"""Keep a run's console to what matters, by dropping two notes of Lightning's that are not about this project.

Only these, matched narrowly, so that any other warning still shows:

- torch 2.13 deprecated ``isinstance(x, LeafSpec)``, and Lightning 2.6.6's own ``lightning/pytorch/utilities/
  _pytree.py`` still does it: a FutureWarning on every run (once per process), that no code of ours can fix;
- the "💡 Tip: ... try installing litlogger" advertisement Lightning logs whenever a Trainer starts.

What was ours is fixed where it arises instead: the kernel scores are logged the way Lightning expects of
values computed on rank 0 (``src/callbacks/tower_kernels.py``), and the model summary counts the net's FLOPs
(``src/callbacks/model_summary.py``).
"""

from __future__ import annotations

import logging
import warnings

LIGHTNING_TIP_PREFIX = "💡 Tip:"
#: the logger Lightning's rank_zero_info writes to
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(LIGHTNING_TIP_PREFIX)


def quiet_lightning() -> None:
    """Drop the two notes of the module docstring (idempotent)."""
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    if _not_a_tip not in logger.filters:
        logger.addFilter(_not_a_tip)
