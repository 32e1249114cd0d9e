"""What a run's W&B workspace shows beyond the raw history: metric summaries, the kernel scalars' x-axis, the
run's notes; and the same read back from a run's own files (offline runs too).

**Summaries** (``define_run_metrics``, called by ``src/train.py`` when the W&B logger starts): the runs table
and the run's overview show ``val/acc`` and ``val/acc_best`` as their maxima and ``val/loss`` as its minimum,
not their last values; every metric keeps Lightning's x-axis, ``trainer/global_step``.

**Kernel scalars** (``define_epoch_axis``, called by ``src/callbacks/tower_kernels.py``): ``kernels/tower0/
colour_mean`` and the others are plotted against ``kernels/epochs_trained``, the number of epochs trained when
the kernels were scored (0: at initialisation), the ``NNN`` of the ``kernels/epoch_NNN_*.png`` files. Not
against Lightning's ``epoch``, which is 0 both at initialisation and after the first epoch.

**Notes** (``run_notes``, the ``notes`` of ``conf/logger/wandb.yaml``): which experiment the run is, in the
words of the first comment line of ``conf/experiment/<name>.yaml``, the config groups chosen, and the
command line's overrides.

**Reading back** (``read_run_info``, ``read_metric_definitions``, ``read_summary``): from the run's record
log ``run-<id>.wandb`` (``src/utils/wandb_offline.py``), so an offline run can be checked before it is synced.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from src.utils.sweep_summary import shown_overrides
from src.utils.wandb_offline import _set_items, iter_records

STEP = "trainer/global_step"  # Lightning's WandbLogger logs it with every metric
EPOCH_AXIS = "kernels/epochs_trained"
#: metric -> the summary the runs table shows for it
SUMMARIES = {"val/acc": "max", "val/acc_best": "max", "val/loss": "min"}
#: config groups named in the notes, in this order
NOTED_GROUPS = ("model", "data", "optimizer", "scheduler", "trainer", "debug")
EXPERIMENT_DIR = Path(__file__).resolve().parents[2] / "conf" / "experiment"


def define_run_metrics(run: Any) -> None:
    """Declare the summaries of ``SUMMARIES`` on a ``wandb`` run (the maximum accuracy, the minimum loss)."""
    for key, summary in SUMMARIES.items():
        run.define_metric(key, step_metric=STEP, summary=summary)


def define_epoch_axis(run: Any, keys: Iterable[str]) -> None:
    """Plot ``keys`` against ``kernels/epochs_trained`` (logged beside them) instead of the global step."""
    run.define_metric(EPOCH_AXIS, hidden=True)
    for key in keys:
        if key != EPOCH_AXIS:
            run.define_metric(key, step_metric=EPOCH_AXIS)


def experiment_description(name: str) -> str:
    """The first comment line of ``conf/experiment/<name>.yaml`` (after ``# @package``), or ``""``."""
    path = EXPERIMENT_DIR / f"{name}.yaml"
    if not path.is_file():
        return ""
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").rstrip(":").strip()
    return ""


def run_notes() -> str | None:
    """The W&B run's notes: the experiment, the groups chosen and the overrides; None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    choices = hydra.runtime.choices
    experiment = choices.get("experiment")
    if experiment:
        description = experiment_description(experiment)
        lines = [f"experiment={experiment}" + (f": {description}" if description else "")]
    else:
        lines = ["no experiment=: the defaults of conf/train.yaml"]
    lines.append(" ".join(f"{g}={choices[g]}" for g in NOTED_GROUPS if choices.get(g)))
    overrides = shown_overrides(hydra.overrides.task)
    if overrides:
        lines.append("overrides: " + " ".join(overrides))
    return "\n".join(lines)


# --- reading a run's own files ------------------------------------------------------------------------------


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``id``, ``group``, ``tags`` and ``notes`` as ``wandb.init`` recorded them."""
    for record in iter_records(run_dir):
        if record.WhichOneof("record_type") == "run":
            run = record.run
            return {"id": run.run_id, "group": run.run_group, "tags": list(run.tags), "notes": run.notes}
    raise ValueError(f"no run record in {run_dir}")


def read_metric_definitions(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``define_metric`` calls, by metric name (or glob, e.g. ``"*"``): ``step_metric``, ``summary`` (the
    summaries asked for, e.g. ``["max"]``) and ``hidden``. A later definition of a name replaces it."""
    definitions = {}
    for record in iter_records(run_dir):
        if record.WhichOneof("record_type") != "metric":
            continue
        metric = record.metric
        summary = [field.name for field, value in metric.summary.ListFields() if value is True]
        definitions[metric.name or metric.glob_name] = {
            "step_metric": metric.step_metric or None,
            "summary": summary,
            "hidden": metric.options.hidden,
        }
    return definitions


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """The run's summary as it stood when the log ends: ``{"val/acc": {"max": 0.9}, "kernels/split": 0.1}``.

    A metric with a declared summary holds a dict of it (W&B's own form); others hold their last value.
    """
    summary: dict[str, Any] = {}
    for record in iter_records(run_dir):
        if record.WhichOneof("record_type") == "summary":
            _set_items(summary, record.summary.update)
            for item in record.summary.remove:
                summary.pop(item.key or "/".join(item.nested_key), None)
    return summary
