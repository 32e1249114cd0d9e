"""Resuming a run: what ``ckpt_path`` means, where the resumed run writes, and which W&B run it continues.

``ckpt_path`` takes four forms::

    python src/train.py ckpt_path=last                 # the run of this task that checkpointed last
    python src/train.py hydra.run.dir=<run> ckpt_path=last   # that run (a new run there if it has none yet)
    python src/train.py ckpt_path=<run>                # that run's checkpoints/last.ckpt
    python src/train.py ckpt_path=<file.ckpt>          # that checkpoint

* ``last`` alone is the run of this task started (or resumed) most recently: among the folders under
  ``<paths.log_dir>/<task_name>/runs/``, the one whose ``.hydra/config.yaml`` Hydra wrote last. That is the
  run the user just ran, even when it stopped (Ctrl-C, a crash) before it saved ``checkpoints/last.ckpt``:
  then ``last`` is an error that names that run and the latest run that does have a checkpoint, never a
  silent resume of an older run. No run at all is an error naming the folder.
* With ``hydra.run.dir=<run>`` given, ``last`` is ``<run>/checkpoints/last.ckpt``; if the folder has no such
  file yet, a new run starts there (and says so). So a cluster script can run the same command on its first
  start and after every requeue.
* A checkpoint file that lies in ``<run>/checkpoints/`` of a run folder (one with ``.hydra/``) belongs to
  that run; a file anywhere else starts a new run, in a new folder, with a new W&B run. A folder that is
  not a run folder is an error (nothing is written into it).

Before Hydra starts, and so before anything is written, ``rewrite_command_line`` checks that the checkpoint
exists and that the network the merged overrides build has the checkpoint's shape (``data.num_classes``,
``model.towers``, ``model.conv_widths``, ``model.fc_width``); a mismatch names each differing key with both
values. Two more refusals, before anything is written, keep a resume from doing something else than it
says:

* a checkpoint older (fewer steps) than the ``last.ckpt`` of the folder the resume would write (an
  ``epoch``-old ``last.ckpt`` copied aside, say) would overwrite that run's newer checkpoints: the message
  says to resume the run (``ckpt_path=<run>``) or to branch into a new folder
  (``hydra.run.dir=<new> ckpt_path=<file>``, which starts there with the run's settings);
* a resume restores the optimiser's param groups (the rate) and the scheduler's state from the checkpoint,
  so a new ``optimizer.*``, ``scheduler`` or ``data.batch_size`` (the batch the rate is scaled for) would be
  printed and saved but not used: such overrides are named and refused (``restored_changes``); start a new
  run to use them.

A resumed run (each form above that names a run folder):

* **writes into the run's own folder**: before Hydra starts, ``rewrite_command_line`` adds
  ``hydra.run.dir=<run>`` (unless the command line has one: then that folder is written, e.g. to branch a
  run into a new folder), so ``checkpoints/``, ``kernels/``, ``train.log`` and the W&B files continue there
  (a CSV logger writes the next ``csv/version_<n>``);
* **has the run's own configuration**: the run's ``.hydra/overrides.yaml`` comes first, then the new command
  line, a later value of a key replacing an earlier one. ``ckpt_path=last`` alone rebuilds the same model and
  data; ``ckpt_path=last trainer.max_epochs=120`` extends the run. Hydra writes the merged configuration to
  ``<run>/.hydra.pending/`` (``hydra.output_subdir``), and ``CommitRunConfig`` moves it over ``.hydra/``
  when training starts (``src/callbacks/resume.py``): a resume that fails before that (a bad override,
  other data) leaves the run's ``.hydra/`` as it was, so the next plain ``ckpt_path=last`` still works, and
  still means the run started last (``.hydra.pending/`` does not count as a start, ``started``);
* **continues the W&B run**: the run keeps its W&B id in ``<run>/wandb_run_id.txt``, and the W&B logger
  takes it up again (``src/loggers/wandb_run.py``). Offline (wandb 0.31), a resumed run writes a new folder
  ``wandb/offline-run-<time>-<same id>`` whose ``_step`` starts again at 0, while ``trainer/global_step``
  goes on; ``wandb sync <run>/wandb/offline-run-*`` uploads the folders of one run in order of start time;
* restores the weights, the optimiser (momentum), the learning-rate scheduler, the epoch and the step
  (Lightning's ``trainer.fit(ckpt_path=...)``). Lightning writes an end-of-epoch checkpoint before that
  epoch's scheduler step and does not repeat the step when it resumes from it, so each resume would leave
  an epoch-wise scheduler one step behind; ``CatchUpEpochSchedulers`` takes that step (with the metric a
  plateau scheduler watches, kept in the checkpoint).

``checkpoints/last.ckpt`` is written after every epoch by its own ``ModelCheckpoint`` (``monitor: null``,
``conf/callbacks/default.yaml``): Lightning 2.6's ``save_last=True`` of a monitoring ``ModelCheckpoint``
rewrites ``last.ckpt`` only in epochs whose ``val/acc`` made a new top-k checkpoint.

Under ``-m`` (multirun) the command line is left alone: each job resolves ``last`` in its own output folder,
so ``hydra.sweep.dir=<old sweep> ckpt_path=last`` picks up each job's ``last.ckpt`` (a job without one
starts anew).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from src.runs.folders import (
    CHECKPOINT_DIR,
    HYDRA_SUBDIR,
    LAST_CHECKPOINT,
    PENDING_SUBDIR,
    RUNS_DIR,
    is_run_dir,
    last_checkpoint,
    latest_run,
    started,
)
from src.runs.overrides import last_value, merge_overrides, override_key, saved_overrides
from src.utils.console import say

LAST = "last"
# The network settings a checkpoint's weights fix (their shapes), as the config names them.
SHAPE_KEYS = {
    "num_classes": "data.num_classes",
    "towers": "model.towers",
    "layers": "model.layers",
    "conv_widths": "model.conv_widths",
    "fc_width": "model.fc_width",
}


def latest_run_to_resume(where: Path) -> Path:
    """The run ``ckpt_path=last`` means (the latest started); ``SystemExit`` if there is none, or if it has
    no ``last.ckpt`` (naming the latest run that has one)."""
    latest = latest_run(where)
    if latest is None:
        raise SystemExit(
            f"ckpt_path=last: no run under {where}; name a checkpoint or a run folder (ckpt_path=<run dir>)"
        )
    if not last_checkpoint(latest).is_file():
        resumable = [(started(p), p.name, p) for p in where.iterdir() if last_checkpoint(p).is_file()]
        older = f"; to resume an older run, name it: ckpt_path={max(resumable)[2]}" if resumable else ""
        raise SystemExit(
            f"ckpt_path=last: the latest run, {latest}, has no {CHECKPOINT_DIR}/{LAST_CHECKPOINT} (it "
            f"stopped before saving one): run its command again without ckpt_path{older}"
        )
    return latest


def runs_dir(conf_dir: Path, config_name: str, overrides: list[str]) -> Path:
    """``<paths.log_dir>/<task_name>/runs`` of the config these overrides compose.

    Only the overrides that can move that folder take part (``paths``, ``task_name``, ``experiment``): the
    others may be valid only beside the saved overrides of the run they resume.
    """
    from hydra import compose, initialize_config_dir

    keys = ("paths", "task_name", "experiment")
    relevant = [o for o in overrides if override_key(o).split(".")[0].split("@")[0] in keys]
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=relevant)
    return Path(cfg.paths.log_dir) / str(cfg.task_name) / RUNS_DIR


def checkpoint_run(ckpt_path: str) -> Path | None:
    """The run folder a ``ckpt_path`` (not ``last``) belongs to: the folder itself, or ``<run>`` of
    ``<run>/checkpoints/<file>``; ``None`` for a file outside a run folder. ``SystemExit`` for a folder that
    is not a run folder, or a checkpoint that does not exist."""
    path = Path(ckpt_path).expanduser().absolute()
    if path.is_dir():
        if not is_run_dir(path):
            raise SystemExit(
                f"ckpt_path={ckpt_path}: {path} is not a run folder (it has no {HYDRA_SUBDIR}/); name a run "
                f"folder (outputs/train/runs/<run>) or a .ckpt file"
            )
        if not last_checkpoint(path).is_file():
            raise SystemExit(
                f"ckpt_path={ckpt_path}: the run {path} has no {CHECKPOINT_DIR}/{LAST_CHECKPOINT} to resume"
            )
        return path
    if not path.is_file():
        raise SystemExit(f"ckpt_path={ckpt_path}: no checkpoint file at {path}")
    if path.parent.name == CHECKPOINT_DIR and is_run_dir(path.parent.parent):
        return path.parent.parent
    return None


def checkpoint_named(ckpt_path: str, runs: Path) -> Path:
    """The checkpoint file a ``ckpt_path`` names, as ``src/train.py`` resolves it (for ``src/eval.py``):
    ``last`` is the ``last.ckpt`` of the run under ``runs`` started last (``latest_run_to_resume``), a run
    folder its ``last.ckpt``, a file itself. ``SystemExit`` with one line naming the path otherwise."""
    if ckpt_path == LAST:
        return last_checkpoint(latest_run_to_resume(runs))
    path = Path(ckpt_path).expanduser().absolute()
    if path.is_dir():
        return last_checkpoint(checkpoint_run(str(path)) or path)
    if not path.is_file():
        raise SystemExit(f"ckpt_path={path} is not a file")
    return path


def checkpoint_file(ckpt_path: str) -> Path:
    """The file a ``ckpt_path`` other than ``last`` names: that file, or a run folder's ``last.ckpt``."""
    path = Path(ckpt_path).expanduser().absolute()
    return last_checkpoint(path) if path.is_dir() else path


def network_mismatch(checkpoint: Path, model: dict[str, Any]) -> list[str]:
    """``key=value here, value in the checkpoint`` for each weight-shaping setting that differs between the
    composed ``model`` config and ``checkpoint``'s network; ``[]`` if none (or the checkpoint has none)."""
    saved = read_checkpoint(checkpoint)
    if "state_dict" in saved and "optimizer_states" not in saved:
        raise SystemExit(
            f"ckpt_path: {checkpoint} holds the weights only (the best epoch's checkpoint is saved so), "
            f"not the optimiser's state a resume needs: resume from {CHECKPOINT_DIR}/{LAST_CHECKPOINT} of "
            "its run (ckpt_path=<run dir>), or evaluate it with src/eval.py"
        )
    saved = saved.get("net_config") or {}
    model = _with_table_widths(model)
    differ = []
    for key, name in SHAPE_KEYS.items():
        if key in saved and key in model and _plain(model[key]) != _plain(saved[key]):
            differ.append(f"{name}={_plain(model[key])} here, {_plain(saved[key])} in the checkpoint")
    return differ


def _with_table_widths(model: dict[str, Any]) -> dict[str, Any]:
    """``model`` with widths left at ``null`` read from its layer table, as ``AlexNet`` reads them."""
    from src.models.layer_table import TABLES

    table = TABLES.get(model.get("layers", "paper"))
    if table is None:  # an unknown table: the net's constructor names it
        return model
    table_widths = {"conv_widths": list(table.conv_widths), "fc_width": table.fc_width}
    return model | {key: value for key, value in table_widths.items() if model.get(key) is None}


def _plain(value: Any) -> Any:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else value


def check_resumable(
    checkpoint: Path, conf_dir: Path, config_name: str, overrides: list[str], saved: list[str] | None = None
) -> None:
    """``SystemExit`` naming the differing settings if the overrides build a net the checkpoint can't fill,
    or (``saved``: the run's own overrides) if they change a setting the checkpoint restores
    (``restored_changes``)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    def composed(given: list[str]) -> Any:
        task = [o for o in given if not override_key(o).startswith("hydra.")]
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose(config_name=config_name, overrides=task)

    try:
        cfg = composed(overrides)
        model = OmegaConf.to_container(cfg.model, resolve=True)
    except Exception:  # a bad override: let Hydra itself report it
        return
    differ = network_mismatch(checkpoint, model)
    if differ:
        raise SystemExit(
            f"ckpt_path: {checkpoint} holds another network than these settings build: "
            + "; ".join(differ)
            + ". Nothing was written; drop the overrides that change the network, or start a new run"
        )
    if saved is None:
        return
    try:
        before = composed(saved)
    except Exception:  # the run's own overrides no longer compose: the merged ones did, so go on
        return
    changed = restored_changes(before, cfg)
    if changed:
        raise SystemExit(
            f"ckpt_path: a resume takes the optimiser's and the schedule's state from {checkpoint}, so these "
            "settings would not apply: "
            + "; ".join(changed)
            + ". Nothing was written; drop them to resume, or start a new run with them (without ckpt_path)"
        )


#: What a resume takes from the checkpoint, not from the config (the optimiser's param groups hold the rate,
#: the scheduler's state its settings), and the batch the rate was scaled for: changing one on resume
#: would print and save a setting the resumed steps do not use.
RESTORED_SETTINGS = ("optimizer", "scheduler", "data.batch_size")


def restored_changes(before: Any, after: Any) -> list[str]:
    """``key=new here, old in the run`` for each ``RESTORED_SETTINGS`` value that differs between the run's
    composed config (``before``) and the resume's (``after``)."""
    from omegaconf import OmegaConf

    def leaves(cfg: Any, key: str) -> dict[str, Any]:
        value = OmegaConf.select(cfg, key, default=None)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=False)
        if not isinstance(value, dict):
            return {key: value}
        found: dict[str, Any] = {}
        for name, item in value.items():
            found |= leaves(cfg, f"{key}.{name}") if isinstance(item, dict) else {f"{key}.{name}": item}
        return found

    changed = []
    for key in RESTORED_SETTINGS:
        old, new = leaves(before, key), leaves(after, key)
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                changed.append(f"{name}={_shown(new.get(name))} here, {_shown(old.get(name))} in the run")
    return changed


def _shown(value: Any) -> str:
    return "(none)" if value is None else str(value)


def check_not_older(checkpoint: Path, target: Path | None) -> None:
    """``SystemExit`` if ``checkpoint`` is older (fewer steps) than the ``last.ckpt`` of the folder the
    resume would write, ``target``: resuming it there would overwrite the newer checkpoints."""
    if target is None:
        return
    last = last_checkpoint(target)
    if not last.is_file() or last.resolve() == checkpoint.resolve():
        return
    this, newest = _progress(checkpoint), _progress(last)
    if this is None or newest is None or this >= newest:
        return
    raise SystemExit(
        f"ckpt_path: {checkpoint} (saved after step {this[1]}) is older than {last} (saved after step "
        f"{newest[1]}), which resuming it in {target} would overwrite. Nothing was written; resume the "
        f"run with ckpt_path={target}, or branch into a new folder with hydra.run.dir=<new folder> "
        f"ckpt_path={checkpoint}"
    )


def _progress(checkpoint: Path) -> tuple[int, int] | None:
    """``(epoch, global_step)`` a checkpoint holds, or None (unreadable, or not a training checkpoint)."""
    import torch

    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    except Exception:
        return None
    if not isinstance(saved, dict) or "global_step" not in saved:
        return None
    return int(saved.get("epoch", 0)), int(saved["global_step"])


def rewrite_command_line(argv: list[str], conf_dir: Path, config_name: str = "train") -> list[str]:
    """The command line (without the program name) a resumed run runs with (see the module docstring).

    Left unchanged: no ``ckpt_path``, flags such as ``-m`` or ``--cfg``, or a checkpoint outside a run folder.
    ``SystemExit`` with a message for ``ckpt_path=last`` when no run has a ``last.ckpt``. Idempotent, so
    the DDP ranks Lightning starts by re-running the command line get the same result.
    """
    if any(arg.startswith("-") for arg in argv):
        return argv
    ckpt_path = last_value(argv, "ckpt_path")
    if ckpt_path in (None, "", "null", "None"):
        return argv
    given_dir = last_value(argv, "hydra.run.dir")
    if ckpt_path == LAST:
        if given_dir:
            source = Path(given_dir).expanduser().absolute()
        else:
            try:
                where = runs_dir(conf_dir, config_name, argv)
            except Exception:  # a bad override: let Hydra itself report it
                return argv
            source = latest_run_to_resume(where)
        checkpoint = last_checkpoint(source)
    else:
        source = checkpoint_run(ckpt_path)
        checkpoint = checkpoint_file(ckpt_path)
    saved = saved_overrides(source) if source is not None else None
    merged = merge_overrides(saved, argv) if saved is not None else list(argv)
    target = Path(given_dir).expanduser().absolute() if given_dir else source
    if checkpoint.is_file():
        check_resumable(checkpoint, conf_dir, config_name, merged, saved)
        check_not_older(checkpoint, target)
    if source is None:
        return argv
    if not given_dir:
        merged.append(f"hydra.run.dir={source}")
    if is_run_dir(target) and last_value(merged, "hydra.output_subdir") is None:
        merged.append(f"hydra.output_subdir={PENDING_SUBDIR}")  # .hydra/ stays as it is until training starts
    return merged


def resolve_checkpoint(ckpt_path: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint file ``trainer.fit`` resumes from, or ``None`` for a new run.

    ``last`` is ``<output_dir>/checkpoints/last.ckpt`` (``None`` when the run has none yet); a run folder
    means its ``last.ckpt``; a file must exist. FileNotFoundError naming the path otherwise.
    """
    if ckpt_path in (None, "", "null", "None"):
        return None
    if ckpt_path == LAST:
        last = Path(output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT
        return last if last.is_file() else None
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_DIR / LAST_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no checkpoint file at {path}")
    return path


def resume_from(ckpt_path: str | None, output_dir: str | Path) -> Path | None:
    """``resolve_checkpoint``, said by rank 0: the checkpoint a run resumes and the folder it writes, or that
    ``ckpt_path=last`` starts a new run in a folder that has no ``last.ckpt`` yet."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    checkpoint = resolve_checkpoint(ckpt_path, output_dir)
    if rank_zero_only.rank == 0:
        if checkpoint is not None:
            say(f"resuming from {checkpoint}, writing to {output_dir}")
        elif ckpt_path == LAST:
            say(f"ckpt_path=last: {output_dir} has no checkpoints/last.ckpt yet, starting a new run there")
    return checkpoint


def commit_run_config(output_dir: str | Path) -> None:
    """Move the configuration Hydra wrote to ``<run>/.hydra.pending/`` over ``<run>/.hydra/``.

    ``overrides.yaml`` goes last: it is what the next resume reads. Each file is renamed into place whole.
    """
    output_dir = Path(output_dir)
    pending = output_dir / PENDING_SUBDIR
    if not pending.is_dir():
        return
    final = output_dir / HYDRA_SUBDIR
    final.mkdir(exist_ok=True)
    for path in sorted(pending.iterdir(), key=lambda p: p.name == "overrides.yaml"):
        os.replace(path, final / path.name)
    pending.rmdir()


def drop_pending_config(output_dir: str | Path) -> None:
    """Forget the configuration of a resume that did not train (``train=false``): ``.hydra/`` stays."""
    pending = Path(output_dir) / PENDING_SUBDIR
    if pending.is_dir():
        shutil.rmtree(pending, ignore_errors=True)


def read_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's dict; ``SystemExit`` with one line naming the file if it cannot be read (a truncated
    copy, a file that is no checkpoint)."""
    import torch

    try:  # mmap: only the small pickled part is read, not the tensors (455 MB for the paper's net)
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:
        raise SystemExit(
            f"ckpt_path: {checkpoint} cannot be read ({type(error).__name__}: {first_sentence(error)}); it "
            "is damaged or not a checkpoint: name another one (epoch_NNN.ckpt beside it, say)"
        ) from None
    if not isinstance(saved, dict):
        raise SystemExit(f"ckpt_path: {checkpoint} is not a checkpoint of src/train.py (no dict inside)")
    return saved


def first_sentence(error: Exception) -> str:
    """The first sentence of an error's message (torch's unreadable-archive error runs to five)."""
    return str(error).split(". ")[0].rstrip(".")
