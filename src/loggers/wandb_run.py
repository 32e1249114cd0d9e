"""The W&B run of a training or evaluation run: everything this project does with W&B while it trains.

**Online or offline** (``choose_wandb_mode``). W&B asks for a key on the terminal (or waits on the network)
when it has none, and with a key but no network (wandb 0.31) it is silent for about 90 s and then fails the
run with a ``CommError``. A researcher on a laptop or an air-gapped cluster node should get a run anyway, at
once. So, unless the user chose a mode (``WANDB_MODE``):

* with no ``WANDB_API_KEY`` and no key stored by ``wandb login``, it sets ``WANDB_MODE=offline``;
* with a key, it opens a TCP connection to the W&B server (``WANDB_BASE_URL``, or the ``HTTPS_PROXY`` in
  between) and, if none is made within ``REACH_TIMEOUT_S`` seconds (the name lookup included), sets
  ``WANDB_MODE=offline``. We chose going offline over stopping: the run keeps every metric and picture in
  its offline folder, and ``wandb sync <run dir>/wandb/offline-run-*`` uploads it later.

Each choice that was not the user's is said in one line. ``WANDB_MODE=disabled`` is the user's to choose, and
W&B writes no files at all: the line says so, and that the run's CSV log (which every logger config keeps)
still holds the metrics.

**The run id** (``wandb_logger``). A run keeps its W&B id in ``<run>/wandb_run_id.txt`` (``write_run_id``,
written when the run starts; for older runs the id is read from the ``wandb/*run-<time>-<id>`` folder names),
so a resumed run (``src/runs/resume.py``) continues the same W&B run: ``WandbLogger(id=...)`` resumes with
``resume="allow"``. wandb-core writes the run's record log every second instead of every 15 s
(``WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL``), so a SIGKILLed run loses at most the last second of logs.

**Names, groups and notes** (``conf/logger/wandb.yaml`` asks for them when the logger is built): under ``-m``
the group is the sweep folder's name (``sweep_group``: a sweep's runs are one group in the W&B UI) and the
name is the job number and its overrides (``sweep_run_name``); for a single run both are ``None`` (W&B's
defaults). ``logger.wandb.group=...`` on the command line replaces the function with a fixed group. The
notes (``run_notes``) say which experiment the run is, in the words of the first comment line of
``conf/experiment/<name>.yaml``, the config groups chosen, and the command line's overrides.

**What the workspace shows**: the runs table and the run's overview show ``val/acc`` and ``val/acc_best``
as their maxima and ``val/loss`` as its minimum, not their last values (``define_run_metrics``); every metric
keeps Lightning's x-axis, ``trainer/global_step``. The kernel scalars of ``src/callbacks/tower_kernels.py``
are plotted against ``kernels/epochs_trained``, the number of epochs trained when the kernels were scored
(``define_epoch_axis``), not against Lightning's ``epoch``, which is 0 both at initialisation and after the
first epoch.

**At the end**: each W&B run is finished (``finish_wandb``: each multirun job must be its own run), and an
offline run's folders are named with the command that uploads them (``report_offline_runs``). Reading a
run's files back, offline runs included, is ``src/loggers/wandb_records.py``.
"""

from __future__ import annotations

import netrc
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from src.loggers.wandb_records import find_offline_runs
from src.metric_names import EPOCHS_TRAINED, VAL_ACC, VAL_ACC_BEST
from src.utils.console import say

# --- online or offline --------------------------------------------------------------------------------------

WANDB_HOST = "api.wandb.ai"
WANDB_URL = f"https://{WANDB_HOST}"
REACH_TIMEOUT_S = 3.0  # a TCP handshake takes milliseconds when the network is there


def has_wandb_key() -> bool:
    """True when W&B could authenticate: an environment key or a ``wandb login`` entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError, PermissionError):
        return False


def server_address() -> tuple[str, int]:
    """The host and port a W&B request first connects to: the HTTPS proxy if one is set, else the server."""
    url = os.environ.get("WANDB_BASE_URL") or WANDB_URL
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    parts = urlsplit(proxy if proxy and url.startswith("https") else url)
    if not parts.hostname:
        raise ValueError(f"WANDB_BASE_URL={url!r} (or the proxy {proxy!r}) names no host")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def unreachable(address: tuple[str, int], timeout_s: float = REACH_TIMEOUT_S) -> str | None:
    """Why no TCP connection to ``address`` was made within ``timeout_s`` seconds (name lookup included), or
    ``None`` if one was.

    The lookup has no timeout of its own (a resolver without a network can hang for tens of seconds), so
    the attempt runs on a daemon thread that is abandoned when the time is up.
    """
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection(address, timeout=timeout_s):
                outcome.append(None)
        except OSError as error:
            outcome.append(error.strerror or type(error).__name__)

    attempt = threading.Thread(target=connect, name="wandb-reachable", daemon=True)
    attempt.start()
    attempt.join(timeout_s)
    return outcome[0] if outcome else f"no answer within {timeout_s:g} s"


def choose_wandb_mode(timeout_s: float = REACH_TIMEOUT_S) -> tuple[str, str | None]:
    """Set ``WANDB_MODE`` as the module docstring says; return the mode in force and the line to print
    about it (``None`` when there is nothing to say: online, or offline by the user's own choice)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    chosen = os.environ.get("WANDB_MODE")
    if chosen == "disabled":
        return chosen, (
            "W&B: WANDB_MODE=disabled: W&B saves nothing, neither online nor offline; the metrics are in "
            "the run's CSV log, csv/version_*/metrics.csv"
        )
    if chosen:
        return chosen, None
    if not has_wandb_key():
        os.environ["WANDB_MODE"] = "offline"
        return "offline", (
            "W&B: no API key found, logging offline (set WANDB_API_KEY or run `wandb login` to go online)"
        )
    address = server_address()
    why = unreachable(address, timeout_s)
    if why is not None:
        os.environ["WANDB_MODE"] = "offline"
        return "offline", (
            f"W&B: {address[0]}:{address[1]} cannot be reached ({why}), so this run logs offline; upload it "
            "later with `wandb sync`, or set WANDB_MODE=offline to skip this check"
        )
    return "online", None


# --- the run id ---------------------------------------------------------------------------------------------

RUN_ID_FILE = "wandb_run_id.txt"
FLUSH_SECONDS = "1"  # how often W&B writes its record log to disk (wandb's default: 15 s)
_RUN_FOLDER = re.compile(r"(?:offline-)?run-\d{8}_\d{6}-(?P<id>[A-Za-z0-9_-]+)")


def new_run_id() -> str:
    """An id in W&B's style (8 lowercase letters and digits)."""
    return uuid.uuid4().hex[:8]


def wandb_run_id(output_dir: str | Path) -> str | None:
    """The W&B run id of the run in ``output_dir``: its ``wandb_run_id.txt``, else the newest
    ``wandb/*run-<time>-<id>`` folder's id, else ``None``."""
    output_dir = Path(output_dir)
    id_file = output_dir / RUN_ID_FILE
    if id_file.is_file() and id_file.read_text().strip():
        return id_file.read_text().strip()
    folders = []
    for folder in (output_dir / "wandb").glob("*run-*"):
        match = _RUN_FOLDER.fullmatch(folder.name)
        if match and folder.is_dir():
            folders.append((folder.name.removeprefix("offline-"), match["id"]))
    return max(folders)[1] if folders else None


def write_run_id(output_dir: str | Path, run_id: str) -> None:
    """Keep ``run_id`` in ``<output_dir>/wandb_run_id.txt`` (written whole, then renamed into place)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / RUN_ID_FILE
    if target.is_file() and target.read_text().strip() == run_id:
        return
    partial = output_dir / f".{RUN_ID_FILE}.{os.getpid()}"
    partial.write_text(run_id + "\n")
    os.replace(partial, target)


def is_wandb(logger_cfg: DictConfig) -> bool:
    """Whether a ``logger`` group entry builds a ``WandbLogger``."""
    return "wandb" in str(logger_cfg.get("_target_", "")).lower()


def wandb_logger(logger_cfg: DictConfig, output_dir: str | Path) -> WandbLogger:
    """The ``WandbLogger`` of ``logger_cfg``, online or offline (``choose_wandb_mode``), with the run's id:
    the one kept in ``output_dir`` when the run is resumed there, else a new one, kept there by rank 0."""
    # wandb-core writes the run's .wandb file every 15 s by default: a SIGKILLed run would lose up to the
    # last 15 s of logs (its last validation, say), which no resume logs again.
    os.environ.setdefault("WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL", FLUSH_SECONDS)
    _, why = choose_wandb_mode()
    if why and rank_zero_only.rank == 0:
        say(why)
    run_id = logger_cfg.get("id") or logger_cfg.get("version") or wandb_run_id(output_dir) or new_run_id()
    if rank_zero_only.rank == 0:
        write_run_id(output_dir, run_id)
    logger = hydra.utils.instantiate(logger_cfg, id=run_id, version=None)
    drop_unset_anonymous(logger)
    if rank_zero_only.rank == 0:  # val/acc as its maximum in the runs table, val/loss as its minimum
        define_run_metrics(logger.experiment)
    return logger


def drop_unset_anonymous(logger: WandbLogger) -> None:
    """Leave wandb's ``anonymous`` setting unset unless the config asks for it.

    Lightning's ``WandbLogger`` always hands ``wandb.init`` an ``anonymous`` argument, ``"allow"`` for
    ``anonymous=True`` and else ``None``, and wandb 0.31 prints "The anonymous setting has no effect and will
    be removed in a future version" for any value it is given, ``None`` included: on every W&B run. The
    ``None`` is taken out; a ``logger.wandb.anonymous=true`` still reaches wandb, which then says so.
    """
    if logger._wandb_init.get("anonymous", False) is None:  # Lightning's only way in: the arguments it keeps
        del logger._wandb_init["anonymous"]


# --- names, groups and notes (conf/logger/wandb.yaml) -------------------------------------------------------

#: Overrides left out of W&B run names: where files go says nothing about the experiment.
_NAME_SKIPPED_PREFIXES = ("paths.", "hydra.", "hydra/")
#: config groups named in the notes, in this order
NOTED_GROUPS = ("model", "data", "optimizer", "scheduler", "trainer", "debug")


def _hydra() -> DictConfig | None:
    """This job's Hydra config, or None outside Hydra."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def _multirun_hydra() -> DictConfig | None:
    """This job's Hydra config when it is a job of a multirun, else None (single run, or no Hydra)."""
    hydra_cfg = _hydra()
    return hydra_cfg if hydra_cfg is not None and hydra_cfg.mode == RunMode.MULTIRUN else None


def sweep_group() -> str | None:
    """The W&B group of this run: under ``-m`` its sweep folder's name (``<date>_<time>``), else None."""
    hydra_cfg = _multirun_hydra()
    return Path(str(hydra_cfg.sweep.dir)).name if hydra_cfg is not None else None


def sweep_run_name() -> str | None:
    """The W&B run name of a sweep's job, ``"<job number>: <its overrides>"``; None for a single run.

    Overrides of ``paths.*`` (where the files go) are left out.
    """
    hydra_cfg = _multirun_hydra()
    if hydra_cfg is None:
        return None
    shown = shown_overrides(hydra_cfg.overrides.task)
    return f"{hydra_cfg.job.num}: {' '.join(shown)}" if shown else str(hydra_cfg.job.num)


def shown_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides that say something about the experiment: not ``paths.*`` or ``hydra.*``."""
    return [o for o in overrides if not o.lstrip("+~").startswith(_NAME_SKIPPED_PREFIXES)]


def _config_dir() -> Path | None:
    """The folder this run's config was composed from (Hydra's primary config source: the repository's
    ``conf/``), so that this module need not know where the repository is; None outside Hydra."""
    hydra_cfg = _hydra()
    sources = hydra_cfg.runtime.config_sources if hydra_cfg is not None else []
    return next((Path(s.path) for s in sources if s.provider == "main" and s.schema == "file"), None)


def experiment_description(name: str) -> str:
    """The first comment line of ``conf/experiment/<name>.yaml`` (after ``# @package``), or ``""`` (also
    outside Hydra)."""
    config_dir = _config_dir()
    if config_dir is None or not (path := config_dir / "experiment" / f"{name}.yaml").is_file():
        return ""
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").rstrip(":").strip()
    return ""


def run_notes() -> str | None:
    """The W&B run's notes: the experiment, the groups chosen and the overrides; None outside Hydra."""
    hydra_cfg = _hydra()
    if hydra_cfg is None:
        return None
    choices = hydra_cfg.runtime.choices
    experiment = choices.get("experiment")
    if experiment:
        description = experiment_description(experiment)
        lines = [f"experiment={experiment}" + (f": {description}" if description else "")]
    else:
        lines = ["no experiment=: the defaults of conf/train.yaml"]
    lines.append(" ".join(f"{g}={choices[g]}" for g in NOTED_GROUPS if choices.get(g)))
    overrides = shown_overrides(hydra_cfg.overrides.task)
    if overrides:
        lines.append("overrides: " + " ".join(overrides))
    return "\n".join(lines)


# --- what the workspace shows -------------------------------------------------------------------------------

STEP = "trainer/global_step"  # Lightning's WandbLogger logs it with every metric
EPOCH_AXIS = EPOCHS_TRAINED
#: metric -> the summary the runs table shows for it
SUMMARIES = {VAL_ACC: "max", VAL_ACC_BEST: "max", "val/loss": "min"}


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


# --- at the end ---------------------------------------------------------------------------------------------


def report_offline_runs(loggers: Iterable[Logger]) -> None:
    """Print where an offline W&B run's folders are, and the command that uploads them."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and os.environ.get("WANDB_MODE") == "offline":
            folders = find_offline_runs(logger.save_dir)
            mine = [f for f in folders if f.name.endswith(f"-{logger.version}")] or folders
            if len(mine) == 1:
                say(f"W&B offline run: {mine[0]}  (upload with: wandb sync {mine[0]})")
            elif mine:  # a resumed run: one folder per process, synced in order of start time
                say(f"W&B offline run {logger.version}, in {len(mine)} folders (one per start):")
                for folder in mine:
                    say(f"  {folder}")
                say(f"upload with: wandb sync {' '.join(str(f) for f in mine)}")


def finish_wandb(loggers: Iterable[Logger], exit_code: int | None = None) -> None:
    """End each W&B run (each multirun job must be its own run), with the process's exit code."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=exit_code)
