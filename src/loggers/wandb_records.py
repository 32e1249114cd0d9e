"""Read what a W&B run logged, from its own files: history rows, config, images, the run's id, group, tags
and notes, its metric definitions and summary; offline runs too, with no network and no W&B account.

An offline run lives in ``<save_dir>/wandb/offline-run-<time>-<id>/``::

    run-<id>.wandb                               the record log (everything the run logged)
    files/media/images/<key>_<step>_<hash>.png   logged images ("/" in a key becomes a folder)
    files/output.log                             console output (only when the run printed something)

wandb 0.31 has no public reader for ``run-<id>.wandb``, and its Python package no longer ships the old
scanner (``wandb.sdk.internal.datastore`` went with the move to the Go ``wandb-core``), so the log format
is parsed here. It is LevelDB's log format with W&B's own file header:

* a 7-byte file header: ``b":W&B"``, the magic ``0xBEE1`` (little-endian uint16), version ``0``;
* then 32 KiB blocks, counted from the start of the file (the file header sits in block 0). Each chunk
  has a 7-byte header ``<IHB``: a CRC-32 (zlib's, seeded with the CRC of the type byte), the length and
  the type (1 full, 2 first, 3 middle, 4 last); a record longer than a block is split into
  first/middle.../last chunks. Fewer than 7 bytes left in a block are zero padding.
* each record is a serialised protobuf ``wandb.proto.wandb_internal_pb2.Record``; the only wandb
  internal used here is that generated message class.

History items carry their key as ``nested_key`` path components: a flat key the user logged, slashes and
all, is one component (``["kernels/tower0/colour_mean"]``), while a dict value is spread over several
(``["kernels/tower0", "_type"]`` for a ``wandb.Image`` logged at ``kernels/tower0``). ``read_history``
puts the components back together into the dict the user logged, so ``row["kernels/tower0/colour_mean"]``
is the scalar and ``row["kernels/tower0"]`` is the image's ``{"_type": "image-file", "path": ...}``.

Trap: in wandb 0.31 offline, ``wandb.finish()`` returns before ``wandb-core`` has written the end of the
record log (about 1 run in 5 here lacked its last history rows when read at once). Call
``wait_until_finished(run_dir)`` between ``finish()`` and reading; the readers themselves stop quietly at
a half-written last record, so they also work on a run that is still going.
"""

from __future__ import annotations

import json
import re
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "find_offline_runs",
    "get_value",
    "image_files",
    "image_path",
    "iter_records",
    "media_paths",
    "metric_series",
    "read_config",
    "read_metric_definitions",
    "read_run_info",
    "read_summary",
    "read_history",
    "record_log_files",
    "wait_until_finished",
]

_FILE_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_FILE_IDENT, _FILE_MAGIC, _FILE_VERSION = b":W&B", 0xBEE1, 0
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
_BLOCK = 32768
_ZERO, _FULL, _FIRST, _MIDDLE, _LAST = range(5)
_TYPE_CRC = {kind: zlib.crc32(bytes([kind])) for kind in (_FULL, _FIRST, _MIDDLE, _LAST)}
_IMAGE_NAME = re.compile(r"(?P<key>.+)_(?P<step>\d+)_(?P<hash>[0-9a-f]+)\.png")
_MISSING = object()


def find_offline_runs(save_dir: str | Path) -> list[Path]:
    """The ``offline-run-*`` folders under ``save_dir/wandb`` (or ``save_dir`` itself if named ``wandb``).

    Sorted by name, which is by start time (``offline-run-<YYYYmmdd_HHMMSS>-<id>``).
    """
    save_dir = Path(save_dir)
    base = save_dir if save_dir.name == "wandb" else save_dir / "wandb"
    return sorted(p for p in base.glob("offline-run-*") if p.is_dir())


def record_log_files(run_dir: str | Path) -> list[Path]:
    """The ``run-*.wandb`` record log(s) of a run folder; FileNotFoundError naming the folder if none."""
    run_dir = Path(run_dir)
    files = sorted(p for p in run_dir.glob("run-*.wandb") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no W&B record log (run-*.wandb) in {run_dir}")
    return files


def _chunks(data: bytes, name: str) -> Iterator[bytes]:
    """The record payloads of one ``.wandb`` file's bytes; a truncated last record (a live run) ends it."""
    if len(data) < _FILE_HEADER.size:
        return
    ident, magic, version = _FILE_HEADER.unpack_from(data)
    if (ident, magic, version) != (_FILE_IDENT, _FILE_MAGIC, _FILE_VERSION):
        raise ValueError(f"{name} is not a W&B record log (header {data[: _FILE_HEADER.size]!r})")
    pos, pending = _FILE_HEADER.size, None
    while True:
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER.size:  # trailer of a block: zero padding
            pos += left
            continue
        if pos + _CHUNK_HEADER.size > len(data):
            return
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        start = pos + _CHUNK_HEADER.size
        if kind == _ZERO and length == 0 and crc == 0:  # preallocated / zeroed rest of a block
            pos += left
            continue
        if start + length > len(data):
            return
        chunk = data[start : start + length]
        if kind not in _TYPE_CRC:
            raise ValueError(f"{name}: unknown chunk type {kind} at byte {pos}")
        if zlib.crc32(chunk, _TYPE_CRC[kind]) != crc:
            raise ValueError(f"{name}: checksum mismatch in the chunk at byte {pos}")
        pos = start + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = [chunk]
        elif pending is not None:  # a middle or last chunk whose first we saw
            pending.append(chunk)
            if kind == _LAST:
                yield b"".join(pending)
                pending = None


def iter_records(run_dir: str | Path) -> Iterator[Any]:
    """Every ``wandb_internal_pb2.Record`` in the run's record log, in the order written.

    ``record.WhichOneof("record_type")`` says what each is: ``"run"``, ``"history"``, ``"config"``,
    ``"summary"``, ``"files"``, ``"stats"``, ``"exit"``, ... Useful for anything the helpers below skip.
    """
    from wandb.proto import wandb_internal_pb2  # wandb's generated protobuf classes

    for path in record_log_files(run_dir):
        for payload in _chunks(path.read_bytes(), str(path)):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            yield record


def wait_until_finished(run_dir: str | Path, timeout: float = 30.0, poll: float = 0.05) -> Path:
    """Wait until the run's record log holds its ``exit`` record (written by ``wandb.finish()``); return it.

    ``wandb.finish()`` in offline mode can return while ``wandb-core`` is still writing the log. A run
    that crashed or is still going has no exit record: TimeoutError after ``timeout`` seconds.
    """
    run_dir = Path(run_dir)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(record.WhichOneof("record_type") == "exit" for record in iter_records(run_dir)):
                return run_dir
        except FileNotFoundError:  # wandb-core has not created the log yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no finished W&B record log in {run_dir} after {timeout} s")
        time.sleep(poll)


def _set_items(target: dict[str, Any], items: Iterable[Any]) -> dict[str, Any]:
    """Apply protobuf items (``key`` or ``nested_key`` path, ``value_json``) to ``target`` as nested dicts."""
    for item in items:
        path = list(item.nested_key) or [item.key]
        node = target
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = json.loads(item.value_json) if item.value_json else None
    return target


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every history row the run logged, in order: key -> decoded JSON value, with ``_step``.

    One row per committed W&B step: each ``wandb.log`` call, except that calls with ``commit=False`` or
    repeating the same explicit ``step=`` merge into one row (that is how W&B itself records them). Keys
    are as the user logged them (``"kernels/tower0/colour_mean"``); a logged dict comes back as a dict,
    and so does a media value (``wandb.Image`` -> ``{"_type": "image-file", "path": ...}``, see
    ``image_path``). ``_timestamp``, ``_runtime`` and ``_step`` are W&B's own. NaN and infinities come
    back as floats. Raises FileNotFoundError naming the folder if it holds no ``run-*.wandb``.
    """
    rows = []
    for record in iter_records(run_dir):
        if record.WhichOneof("record_type") == "history":
            row = _set_items({}, record.history.item)
            row.setdefault("_step", record.history.step.num)
            rows.append(row)
    return rows


def get_value(row: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``row[key]``, else the value at ``key``'s "/" path in a logged dict: ``"d/e"`` -> ``row["d"]["e"]``."""
    if key in row:
        return row[key]
    parts = key.split("/")
    for i in range(len(parts) - 1, 0, -1):  # longest logged key first
        head = row.get("/".join(parts[:i]))
        if isinstance(head, Mapping):
            value = get_value(head, "/".join(parts[i:]), _MISSING)
            if value is not _MISSING:
                return value
    return default


def metric_series(history: Iterable[Mapping[str, Any]], key: str) -> list[tuple[int, Any]]:
    """``(step, value)`` for each history row holding ``key`` (see ``get_value``), in logging order.

    The step is the row's ``trainer/global_step`` when it has one (Lightning's ``WandbLogger`` logs it
    beside every metric), else W&B's ``_step``.
    """
    series = []
    for row in history:
        value = get_value(row, key, _MISSING)
        if value is _MISSING:
            continue
        step = row.get("trainer/global_step", row.get("_step"))
        series.append((int(step) if step is not None else step, value))
    return series


def _unwrap_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a": {"desc": None, "value": 1}}`` (config.yaml's wrapping) -> ``{"a": 1}``."""
    config = {}
    for key, value in raw.items():
        if isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]
        config[key] = value
    return config


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config: ``wandb.init(config=...)`` plus later ``wandb.config`` updates (later wins).

    Read from the record log (its run record and config records); from ``files/config.yaml``, unwrapped
    from W&B's ``{"desc": ..., "value": ...}``, when the log has no config or there is no log. W&B's own
    ``_wandb`` entry is left out. FileNotFoundError if the folder has neither.
    """
    run_dir = Path(run_dir)
    yaml_file = run_dir / "files" / "config.yaml"
    config: dict[str, Any] = {}
    try:
        for record in iter_records(run_dir):
            kind = record.WhichOneof("record_type")
            if kind in ("run", "config"):
                updates = record.run.config if kind == "run" else record.config
                _set_items(config, updates.update)
                for item in updates.remove:
                    _pop_path(config, list(item.nested_key) or [item.key])
    except FileNotFoundError:
        if not yaml_file.is_file():
            raise FileNotFoundError(f"neither run-*.wandb nor files/config.yaml in {run_dir}") from None
    config.pop("_wandb", None)
    if not config and yaml_file.is_file():
        import yaml

        config = _unwrap_config(yaml.safe_load(yaml_file.read_text()) or {})
        config.pop("_wandb", None)
    return config


def _pop_path(target: dict[str, Any], path: list[str]) -> None:
    """Remove ``target[path[0]][path[1]]...`` if it is there."""
    for part in path[:-1]:
        target = target.get(part)
        if not isinstance(target, dict):
            return
    target.pop(path[-1], None)


def image_files(run_dir: str | Path, key_prefix: str = "") -> list[Path]:
    """The PNGs under ``files/media/images`` whose logged key starts with ``key_prefix``.

    W&B names them ``<key>_<step>_<hash>.png`` with "/" in the key as folders, so ``"kernels/tower0"``
    finds ``kernels/tower0_<step>_<hash>.png``. Sorted by key, then numerically by the step in the name.
    That step is W&B's ``_step`` when the image was serialised, not Lightning's global step, and equal
    pictures share one file: to find the picture of a given history row use ``image_path`` on its value.
    """
    root = Path(run_dir) / "files" / "media" / "images"
    found = []
    for path in root.rglob("*.png"):
        name = path.relative_to(root).as_posix()
        match = _IMAGE_NAME.fullmatch(name)
        key, step = (match["key"], int(match["step"])) if match else (name[: -len(".png")], -1)
        if key.startswith(key_prefix):
            found.append((key, step, name, path))
    return [path for *_, path in sorted(found)]


def media_paths(run_dir: str | Path, value: Mapping[str, Any]) -> list[Path]:
    """The files behind a history row's media value (e.g. ``row["kernels/tower0"]``), under ``files/``.

    Handles a single file (``{"_type": "image-file", "path": ...}``, also ``video-file``, ``table-file``,
    ...) and a list of images (``{"_type": "images/separated", "filenames": [...]}``, what Lightning's
    ``log_image`` and ``wandb.log({k: [wandb.Image, ...]})`` record). ValueError for anything else.
    """
    files = Path(run_dir) / "files"
    if isinstance(value, Mapping):
        if isinstance(value.get("path"), str):
            return [files / value["path"]]
        if isinstance(value.get("filenames"), list):
            return [files / name for name in value["filenames"]]
    raise ValueError(f"not a W&B media value with a file: {value!r}")


def image_path(run_dir: str | Path, value: Mapping[str, Any]) -> Path:
    """The PNG (or other image file) of one logged image: a history value of a ``wandb.Image``.

    Accepts ``{"_type": "image-file", ...}`` and a one-image ``images/separated`` list (Lightning's
    ``log_image(images=[x])``); use ``media_paths`` for several. ValueError for anything else.
    """
    kind = value.get("_type") if isinstance(value, Mapping) else None
    if kind not in ("image-file", "images/separated"):
        raise ValueError(f"not a W&B image value: {value!r}")
    paths = media_paths(run_dir, value)
    if len(paths) != 1:
        raise ValueError(f"{len(paths)} images in this value, not one; use media_paths: {value!r}")
    return paths[0]


# --- what the W&B workspace shows (src/loggers/wandb_run.py declares it) ----------------------------------


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
