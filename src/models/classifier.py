"""The LightningModule: cross-entropy training of an ``AlexNet`` with SGD and a plateau schedule (section 5).

Section 5: "We trained our models using stochastic gradient descent with a batch size of 128 examples,
momentum of 0.9, and weight decay of 0.0005 ... The learning rate was initialized at 0.01 ... divide the
learning rate by 10 when the validation error rate stopped improving with the current learning rate."

The module is built whole from the config's ``module`` node (``conf/train.yaml``), which takes the net,
the optimiser and the schedule from their groups; none of its settings has a default of its own. The
optimiser and scheduler arrive as partials from Hydra (``conf/optimizer``, ``conf/scheduler``) and are
bound to the parameters here, at the rate ``BatchScaledRate`` computed once from the config. Weight decay
applies to weights only, not biases, as in cuda-convnet, whose layer definitions give the decay ``wc`` to
weights alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from src.metric_names import TEST_ACC, VAL_ACC, VAL_ACC_BEST
from src.models.alexnet import AlexNet
from src.utils.console import say

NET_CONFIG_KEY = "net_config"  # the checkpoint entry that rebuilds the network (see load_network)
WARMUP_KEY = "warmup_steps_chosen"  # the checkpoint entry with the warm-up the run chose (see fitted_warmup)
# An explicit warm-up (warmup_fraction None) longer than this share of the run is warned about.
WARMUP_WARN_SHARE = 0.25
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


@dataclass(frozen=True)
class BatchScaledRate:
    """The learning rate scaled linearly with the global batch (Goyal et al. 2017, section 2.1): ``lr`` is
    the rate at batch ``lr_batch`` (``scheduler.lr_batch``), ``value`` the rate at ``batch_size``
    (``data.batch_size``); ``lr_batch`` None: ``lr`` as given."""

    lr: float
    lr_batch: int | None
    batch_size: int

    @property
    def value(self) -> float:
        return self.lr * self.batch_size / self.lr_batch if self.lr_batch else self.lr

    def line(self) -> str:
        """What the run prints when the rate was scaled (empty when it was not)."""
        if self.value == self.lr:
            return ""
        scaled = f"{self.value:g} at batch {self.batch_size}"
        return f"learning rate: {self.lr:g} at batch {self.lr_batch} -> {scaled}"


class TowerClassifier(L.LightningModule):
    """Trains ``net`` on (image, label) batches.

    Logs ``{train,val,test}/{loss,acc}``, ``val/acc_best`` and ``lr``.

    Every argument is required (the config's ``module`` node gives them all; ``for_evaluation`` builds a
    module that only evaluates).

    Args:
        net: the network (its hyper-parameters live in the Hydra config, not in the checkpoint's hparams).
        optimizer: a partial taking ``params`` (e.g. ``torch.optim.SGD`` with lr, momentum, weight_decay);
            ``None`` for a module that only evaluates.
        scheduler: a partial taking the optimizer, or ``None`` for a constant learning rate.
        scheduler_monitor: the logged metric a ``ReduceLROnPlateau`` watches.
        warmup_steps: the learning rate rises linearly from ``lr / W`` to ``lr`` over the first ``W``
            optimiser steps (Goyal et al. 2017, section 2.2), ``W`` the warm-up ``fitted_warmup`` chooses
            at the start of fit from ``warmup_steps`` and ``warmup_fraction``; 0: no warm-up (the paper).
            The warm-up scales each step's rate and leaves the scheduled rate alone, so a plateau schedule
            and a resumed run see the rate they set. A resumed run keeps the warm-up it started with.
        warmup_fraction: the warm-up's longest share of the run's optimiser steps: ``W = min(warmup_steps,
            floor(warmup_fraction x the run's steps))``, so that a short run reaches its full rate early.
            ``None``: ``warmup_steps`` as given, with a warning when it covers more than
            ``WARMUP_WARN_SHARE`` of the run.
        learning_rate: the rate every parameter group trains at, scaled with the batch (``BatchScaledRate``);
            ``None``: the optimizer's own ``lr``.
        compile: ``torch.compile`` the network in ``configure_model`` (``compile=true`` in the config).
    """

    def __init__(
        self,
        net: AlexNet,
        *,
        optimizer: OptimizerFactory | None,
        scheduler: SchedulerFactory | None,
        scheduler_monitor: str | None,
        warmup_steps: int,
        warmup_fraction: float | None,
        learning_rate: BatchScaledRate | None,
        compile: bool,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self._inside_warmup_step = False  # optimizer_step has scaled the groups' rates by the warm-up factor
        self._warmup_steps: int | None = None  # the warm-up chosen when training starts (on_train_start)
        self._restored_warmup: int | None = None  # the one a resumed run's checkpoint holds
        self.compile_net = compile
        self._net_compiled = False
        num_classes = net.num_classes
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        # updated with each batch's mean weighted by its size: an epoch's loss is the mean over its images,
        # whatever their order and however small the last batch
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run remembers its best epoch

    @classmethod
    def for_evaluation(cls, net: AlexNet) -> TowerClassifier:
        """A module that only tests or validates ``net`` (``src/eval.py``): no optimiser, no schedule."""
        return cls(
            net,
            optimizer=None,
            scheduler=None,
            scheduler_monitor=None,
            warmup_steps=0,
            warmup_fraction=None,
            learning_rate=None,
            compile=False,
        )

    def configure_model(self) -> None:
        """Compile the network once, in the process that trains it (a spawned DDP rank compiles its own copy).

        ``nn.Module.compile`` compiles ``self.net``'s forward in place: unlike ``torch.compile(self.net)`` it
        adds no ``_orig_mod.`` wrapper, so the checkpoint's parameter names are the plain net's.
        """
        if self.compile_net and not self._net_compiled:
            compile_in_place(self.net)
            self._net_compiled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, scores) of a batch of (B, 3, H, W) images, or of (B, V, 3, H, W) views of each image.

        With several views the prediction is the mean of the views' softmax outputs (section 4.1: "averaging
        the predictions made by the network's softmax layer on the ten patches"), and the loss is the negative
        log of that averaged probability for the true class.
        """
        images, labels = batch
        if images.dim() == 4:
            logits = self(images)
            return F.cross_entropy(logits, labels), logits
        batch_size, views = images.shape[:2]
        probabilities = F.softmax(self(images.flatten(0, 1)), dim=-1).view(batch_size, views, -1).mean(1)
        return F.nll_loss(probabilities.clamp_min(1e-12).log(), labels), probabilities

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits = self._step(batch)
        labels = batch[1]
        self.train_loss(loss, weight=len(labels))
        self.train_acc(logits, labels)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        self.log("lr", self.applied_lr(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.val_loss(loss, weight=len(batch[1]))
        self.val_acc(logits, batch[1])
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log(VAL_ACC, self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # a few batches before training must not count as the best epoch
            return
        self.val_acc_best(self.val_acc.compute())
        self.log(VAL_ACC_BEST, self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.test_loss(loss, weight=len(batch[1]))
        self.test_acc(logits, batch[1])
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log(TEST_ACC, self.test_acc, on_step=False, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[NET_CONFIG_KEY] = self.net.config()
        if self._warmup_steps is not None:
            checkpoint[WARMUP_KEY] = self._warmup_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored_warmup = checkpoint.get(WARMUP_KEY)

    def on_train_start(self) -> None:
        """Choose the warm-up (``fitted_warmup``) for this run's length, or keep a resumed run's, and say so.

        The run's length is Lightning's ``estimated_stepping_batches``: the optimiser steps ``max_epochs``
        (or ``max_steps``) take, after ``limit_train_batches``, ``overfit_batches`` and
        ``accumulate_grad_batches``. A resumed run keeps the warm-up its checkpoint holds, so that a longer
        run (``ckpt_path=last trainer.max_epochs=...``) does not move a warm-up already under way; a
        checkpoint written before the warm-up fitted the run has none, and it is chosen again.
        """
        warmup = self.hparams.warmup_steps
        fraction = self.hparams.warmup_fraction
        restored = self._restored_warmup if self.trainer.ckpt_path else None
        self._restored_warmup = None
        long_warmup = ""
        if restored is not None:
            self._warmup_steps = int(restored)
            line = (
                f"warm-up: {restored} step{'' if restored == 1 else 's'}, as this run chose when it started "
                "(kept in its checkpoint)"
                if warmup
                else ""
            )
        else:
            total = self.trainer.estimated_stepping_batches
            self._warmup_steps = fitted_warmup(warmup, fraction, total)
            line = warmup_line(warmup, fraction, total, self._warmup_steps)
            long_warmup = warmup_warning(warmup, fraction, total, self.trainer.optimizers[0])
        if self.trainer.is_global_zero:
            if line:
                say(line)
            if long_warmup:
                warnings.warn(long_warmup, UserWarning, stacklevel=1)

    @property
    def chosen_warmup(self) -> int:
        """The warm-up this run uses: chosen when training starts; ``warmup_steps`` as given before that."""
        if self._warmup_steps is not None:
            return self._warmup_steps
        return self.hparams.warmup_steps

    def warmup_factor(self, step: int | None = None) -> float:
        """The share of the scheduled learning rate step ``step`` (0-based; default: the current step) uses
        (1 after the warm-up)."""
        warmup = self.chosen_warmup
        if not warmup or self._trainer is None:
            return 1.0
        step = self.trainer.global_step if step is None else step
        return min(1.0, (step + 1) / warmup)

    def last_step_lr(self) -> float:
        """The rate the last optimiser step used, read after it (``global_step`` already counts it)."""
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        return lr * self.warmup_factor(self.trainer.global_step - 1)

    def applied_lr(self) -> float:
        """The rate this step's update uses: the scheduled rate times the warm-up factor, counted once.

        training_step runs inside optimizer_step (as its closure), where the groups already hold the
        warmed-up rate; outside it (a batch that only accumulates gradients) they hold the scheduled rate.
        """
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        return lr if self._inside_warmup_step else lr * self.warmup_factor()

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        factor = self.warmup_factor()
        if factor == 1.0:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        scheduled = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] *= factor
        self._inside_warmup_step = True
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            self._inside_warmup_step = False
            for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
                group["lr"] = lr

    def configure_optimizers(self) -> dict[str, Any]:
        if self.hparams.optimizer is None:
            raise ValueError(
                "this TowerClassifier was built without an optimizer: it can evaluate, not train"
            )
        weights = [p for n, p in self.net.named_parameters() if not n.endswith("bias")]
        biases = [p for n, p in self.net.named_parameters() if n.endswith("bias")]
        optimizer = self.hparams.optimizer(
            params=[{"params": weights}, {"params": biases, "weight_decay": 0.0}]
        )
        rate = self.hparams.learning_rate
        if rate is not None:
            for group in optimizer.param_groups:
                group["lr"] = rate.value
            if rate.line() and (self._trainer is None or self.trainer.is_global_zero):
                say(rate.line())
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = self.hparams.scheduler(optimizer=optimizer)
        # A plateau schedule reads a validation metric, so it steps only after the epochs that validate
        # (trainer.check_val_every_n_epoch; debug=overfit validates every 10th).
        every = getattr(self._trainer, "check_val_every_n_epoch", None) if self._trainer is not None else None
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.hparams.scheduler_monitor,
                "interval": "epoch",
                "frequency": every if isinstance(every, int) and every > 1 else 1,
            },
        }


def fitted_warmup(warmup_steps: int, warmup_fraction: float | None, total_steps: float) -> int:
    """The warm-up of a run of ``total_steps`` optimiser steps: ``min(warmup_steps, floor(warmup_fraction x
    total_steps))``; ``warmup_steps`` as given when ``warmup_fraction`` is ``None`` or the run's length is
    not known (``total_steps`` infinite or not positive)."""
    if warmup_fraction is None or not math.isfinite(total_steps) or total_steps < 1:
        return warmup_steps
    return min(warmup_steps, math.floor(warmup_fraction * total_steps))


def warmup_line(warmup_steps: int, warmup_fraction: float | None, total_steps: float, chosen: int) -> str:
    """The line a run prints about the warm-up it chose (empty when none was asked for)."""
    if not warmup_steps:
        return ""
    steps = f"{chosen} step{'' if chosen == 1 else 's'}"
    if warmup_fraction is None:
        return f"warm-up: {steps} (scheduler.warmup_steps, as given: scheduler.warmup_fraction=null)"
    if not math.isfinite(total_steps) or total_steps < 1:
        return f"warm-up: {steps} (scheduler.warmup_steps: this run's length is not known)"
    total = int(total_steps)
    share = f"{warmup_fraction * 100:g} % of this run's {total} step{'' if total == 1 else 's'}"
    if chosen == warmup_steps:
        longest = math.floor(warmup_fraction * total)
        return f"warm-up: {steps} (scheduler.warmup_steps; {share} would be {longest})"
    if chosen == 0:
        return f"warm-up: none ({share} is under one step)"
    return f"warm-up: {steps} ({share}; scheduler.warmup_steps={warmup_steps} is the cap)"


def warmup_warning(
    warmup_steps: int, warmup_fraction: float | None, total_steps: float, optimizer: torch.optim.Optimizer
) -> str:
    """A warning when an explicit warm-up (``warmup_fraction`` None) covers more than ``WARMUP_WARN_SHARE``
    of a run of known length; empty otherwise."""
    if warmup_fraction is not None or not math.isfinite(total_steps) or total_steps < 1:
        return ""
    total = int(total_steps)
    if warmup_steps <= WARMUP_WARN_SHARE * total:
        return ""
    message = (
        f"scheduler.warmup_steps={warmup_steps} covers {warmup_steps / total * 100:.0f} % of this run's "
        f"{total} steps (more than {WARMUP_WARN_SHARE * 100:g} %)"
    )
    if warmup_steps > total:
        rate = optimizer.param_groups[0]["lr"]
        message += (
            f": the rate is still rising when the run ends, at {rate * total / warmup_steps:.3g} of {rate:g}"
        )
    return message + f"; scheduler.warmup_fraction={WARMUP_WARN_SHARE:g} fits the warm-up to the run"


def compile_in_place(net: torch.nn.Module) -> None:
    """``net.compile()``, working around a silent Inductor bug in torch 2.13 first.

    Inductor (2.13) rewrites max-pooling's backward as a ``scatter_add`` and, in some fused graphs, drops
    the scatter: a compiled conv -> ReLU -> max-pool -> linear chain then gets zero gradients for every layer
    below the pool (``tests/test_compile.py`` has a case). Inductor's own lowering of the op, which it uses
    anyway in deterministic mode, is correct; removing the rewrite from Inductor's table makes it use that.
    """
    try:
        from torch._inductor import decomposition
    except ImportError:  # no Inductor: torch.compile will say so
        pass
    else:
        rewrite = getattr(torch.ops.aten.max_pool2d_with_indices_backward, "default", None)
        if decomposition.decompositions.pop(rewrite, None) is not None:  # process-wide, for this op only
            cached_table = getattr(decomposition, "fast_random_decomps", None)
            if hasattr(cached_table, "cache_clear"):
                cached_table.cache_clear()  # a cached copy of the table
    net.compile()


def load_network(checkpoint_path: str | Path) -> AlexNet:
    """The trained ``AlexNet`` in a checkpoint written by ``src/train.py``, in eval mode, on the CPU.

    The checkpoint also holds the optimiser's settings as Python objects, so it is unpickled in full: load
    only checkpoints you trust.
    """
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    return network_from_checkpoint(checkpoint, checkpoint_path)


def network_from_checkpoint(checkpoint: dict[str, Any], source: str | Path) -> AlexNet:
    """The ``AlexNet`` of an already loaded checkpoint dict (``source`` names it in errors)."""
    if NET_CONFIG_KEY not in checkpoint:
        raise ValueError(f"{source} has no '{NET_CONFIG_KEY}': it was not written by src/train.py")
    net = AlexNet(**checkpoint[NET_CONFIG_KEY])
    prefix = "net."
    weights = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    net.load_state_dict(weights)
    return net.eval()
