"""The types and ranges of the settings in ``conf/``, checked before anything runs (``check_config``).

The YAML files own the values; this module owns what a value may be. A wrong type or value stops the run
with one line naming the key, ``error: data.batch_size=-3: expected an integer >= 1``, before the data, the
loggers or the trainer start. The choices are read from the code that uses them (the layer tables, the
initialisations, the views, the layouts, Lightning's precisions), so they cannot drift apart.

pydantic (installed with wandb) checks the values: its strict mode refuses what YAML or Hydra's override
grammar would otherwise let through silently (``true`` for a number, ``"2"`` for an integer). Each field
says in words what it expects (``Expect``), so the message reads the same whatever pydantic's wording.
Hydra structured configs would check types only, not ranges or choices computed from the code, and would
have to copy every default into a dataclass: the YAML would no longer be the one owner of the values.

Keys the schema does not name (``_target_``, a dataset's ``source``, most Trainer arguments) pass as they
are; the named keys must be present in the composed config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, get_args

from lightning.fabric.connector import _PRECISION_INPUT
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from src.data.datamodule import NORMALIZATIONS
from src.data.layouts import LAYOUTS
from src.data.views import EVAL_VIEWS, TRAIN_VIEWS
from src.models.alexnet import INIT_SCHEMES
from src.models.layer_table import TABLES


@dataclass(frozen=True)
class Expect:
    """What a field expects, in words: the end of the error line."""

    text: str


def _integer(minimum: int | None = None, null: bool = False) -> Any:
    kind = Annotated[int, Field(ge=minimum)]
    bound = "" if minimum is None else f" >= {minimum}"
    return Annotated[kind | None if null else kind, Expect(f"an integer{bound}{' or null' if null else ''}")]


def _number(low: float, high: float, closed: str = "[]", null: bool = False) -> Any:
    """A number in the interval ``low..high``; ``closed`` says which ends belong to it ("[)", "(]" ...)."""
    bounds = {"ge" if closed[0] == "[" else "gt": low, "le" if closed[1] == "]" else "lt": high}
    kind = Annotated[float, Field(**{key: value for key, value in bounds.items() if math.isfinite(value)})]
    if math.isinf(high):
        words = f"a number {'>=' if closed[0] == '[' else '>'} {low:g}"
    else:
        words = f"a number in {closed[0]}{low:g}, {high:g}{closed[1]}"
    return Annotated[kind | None if null else kind, Expect(words + (" or null" if null else ""))]


def _choice(values: tuple[Any, ...]) -> Any:
    words = "one of " + ", ".join(str(value) for value in values)
    return Annotated[Literal[values], Expect(words)]


Flag = Annotated[bool, Expect("true or false")]
Text = Annotated[str, Expect("a string")]
PRECISIONS = ("auto", *(value for literal in get_args(_PRECISION_INPUT) for value in get_args(literal)))


class Section(BaseModel):
    """A config group's checked keys and what each may hold (the others pass)."""


class Model(Section):
    num_classes: _integer(1)
    towers: _integer(1)
    layers: _choice(tuple(TABLES))
    conv_widths: Annotated[
        Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=5, max_length=5)] | None,
        Expect("a list of 5 integers >= 1 (conv1..conv5) or null"),
    ]
    fc_width: _integer(1, null=True)
    dropout: _number(0, 1, "[]")  # torch.nn.Dropout's range; p = 1 trains a dead net: training_health stops
    lrn_size: _integer(1)
    lrn_k: _number(0, math.inf, "[]")
    lrn_alpha: _number(0, math.inf, "[]")
    lrn_beta: _number(0, math.inf, "[]")
    lrn_after_pool: Flag
    init: _choice(INIT_SCHEMES)
    channels_last: Flag


class Data(Section):
    root: Text
    num_classes: _integer(1)
    classes: Annotated[
        Annotated[int, Field(ge=1)] | list[str] | None,
        Expect("a number of classes >= 1, a list of class names, or null"),
    ]
    layout: _choice(LAYOUTS)
    cache_dir: Text
    val_fraction: _number(0, 1, "()")
    batch_size: _integer(1)
    num_workers: _integer(0, null=True)
    image_size: _integer(1)
    crop_size: _integer(1)
    train_views: _choice(TRAIN_VIEWS)
    val_views: _choice(EVAL_VIEWS)
    test_views: _choice(EVAL_VIEWS)
    pca_std: _number(0, math.inf, "[]")
    normalize: _choice(NORMALIZATIONS)
    split_seed: _integer()
    cache_workers: _integer(0, null=True)


class Optimizer(Section):
    lr: _number(0, math.inf, "[]")  # torch.optim.SGD's range; lr 0 keeps the weights (a loaded net's check)
    momentum: _number(0, math.inf, "[]")
    weight_decay: _number(0, math.inf, "[]")


class Scheduler(Section):
    monitor: Annotated[str | None, Expect("a logged metric's name or null")]
    warmup_steps: _integer(0)
    warmup_fraction: _number(0, 1, "(]", null=True)
    lr_batch: _integer(1, null=True)


class Trainer(Section):
    precision: _choice(PRECISIONS)
    max_epochs: _integer(-1, null=True)
    accumulate_grad_batches: _integer(1)
    check_val_every_n_epoch: _integer(1, null=True)


class Run(Section):
    seed: _integer()
    compile: Flag
    train: Flag
    test: Flag


#: Each checked group of the composed config and its schema (``""``: the top-level keys).
SECTIONS: dict[str, type[Section]] = {
    "": Run,
    "data": Data,
    "model": Model,
    "optimizer": Optimizer,
    "scheduler": Scheduler,
    "trainer": Trainer,
}


def _shown(value: Any) -> str:
    """A value as it would be written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@cache
def _adapter(schema: type[Section], name: str) -> TypeAdapter:
    """The strict validator of one field of ``schema``."""
    field = schema.model_fields[name]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)], config=ConfigDict(strict=True))


def _expected(schema: type[Section], name: str) -> str:
    return next(m.text for m in schema.model_fields[name].metadata if isinstance(m, Expect))


def check_section(node: DictConfig, group: str, schema: type[Section]) -> None:
    """``SystemExit`` with one line naming the first key of ``node`` (the config group ``group``, ``""`` for
    the top level) whose value ``schema`` refuses, or that a group lacks. Each key is resolved alone: a
    Trainer key the schema does not name may read Hydra's run folder, which resolves only inside a run.
    The top level differs between entry points: its keys are checked where present."""
    prefix = f"{group}." if group else ""
    present = set(node.keys())  # ``in`` would not count a key whose value is ??? (missing)
    for name in schema.model_fields:
        if name in present and OmegaConf.is_missing(node, name):
            raise SystemExit(f"error: {prefix}{name}=???: give it a value")
        if name not in present:
            if group:
                raise SystemExit(f"error: {prefix}{name}: missing from the config")
            continue
        value = node[name]
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        try:
            _adapter(schema, name).validate_python(value)
        except ValidationError:
            raise SystemExit(
                f"error: {prefix}{name}={_shown(value)}: expected {_expected(schema, name)}"
            ) from None


def check_config(cfg: DictConfig) -> None:
    """Check the composed config of a run (``src/train.py``, ``src/eval.py``) against ``SECTIONS``: the
    groups it has are checked, and the crop against the cached image. ``SystemExit`` with one line naming
    the first key refused."""
    for group, schema in SECTIONS.items():
        node = cfg if not group else cfg.get(group)
        if node is not None:
            check_section(node, group, schema)
    data = cfg.get("data")
    if data is not None and data.crop_size > data.image_size:
        raise SystemExit(
            f"error: data.crop_size={data.crop_size}: expected an integer <= data.image_size "
            f"({data.image_size}), the cached images it is cut from"
        )
