"""See a run going wrong early, and stop one that has died instead of training on for 90 epochs.

Every ``every_n_steps`` training steps (and at step 0) this callback logs, per conv and fc layer
(``conv1`` .. ``fc8``), to every logger (W&B and the CSV alike):

    health/<layer>/grad_norm     L2 norm of the layer's weight gradient (before the optimiser step)
    health/<layer>/weight_norm   L2 norm of the layer's weights
    health/<layer>/update_ratio  lr x grad_norm / weight_norm: the relative size of a plain SGD step
                                 (momentum makes the real step up to 1 / (1 - momentum) = 10 times larger)
    health/<layer>/dead_units    share of the layer's ReLU units (channels of a conv layer, neurons of an fc
                                 layer) that output zero for every image and position of the batch
    health/logit_spread          standard deviation of the logits across the batch, averaged over classes:
                                 0 when the net gives every image the same output
    health/top_class_share       share of the batch predicted as its most frequent class: 1 when every
                                 image gets the same answer

A run is **dead** when its loss is not finite (stopped at once, at that step), or when its output no longer
depends on its input: ``logit_spread`` below ``min_logit_spread`` at ``patience`` checks in a row. A net
whose fc6 or fc7 units are all dead outputs fc8's bias for every image (spread exactly 0), and no gradient
reaches the layers below: it never recovers by itself. A dead run prints what happened and what to try,
logs ``health/dead`` = 1, writes ``<run dir>/DIED.txt`` and raises :class:`TrainingDiedError`, which
``exit_when_dead`` (around ``src/train.py``'s fit) turns into exit code 3 after closing the loggers; the
checkpoints already written (the last good epoch's ``last.ckpt``) are kept as they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from src.models.layer_table import CONV_NAMES, FC_NAMES
from src.runs.folders import DIED_FILE
from src.utils.atomic import write_atomic
from src.utils.exits import DIED_EXIT_CODE, exit_on_error

WHAT_TO_TRY = (
    "what to try: a smaller optimizer.lr (halve it), a longer scheduler.warmup_steps, "
    "trainer.gradient_clip_val=1.0, or the defaults of conf/train.yaml if you changed model.init"
)

# Which ReLU follows which layer (src/models/alexnet.py); fc8 has none.
RELU_OF = {f"conv{i}": f"relu{i}" for i in range(1, 6)} | {"fc6": "relu6", "fc7": "relu7"}


class TrainingDiedError(RuntimeError):
    """The run has died (non-finite loss, or an output that no longer depends on the input)."""


class TrainingHealth(L.Callback):
    """Per-layer gradient and weight norms, dead ReLUs and the logits' spread; stops a dead run.

    Args:
        every_n_steps: how often the per-layer figures are measured and logged (0: never; the non-finite
            loss check still runs every step).
        min_logit_spread: below this ``health/logit_spread`` the output counts as constant. At 0.01 the
            softmax probabilities of any two images of the batch differ by about 1 % of their value at
            most: the prediction carries next to nothing about the input. (Healthy runs measured here start
            at 0.07-0.7 and grow; the old defaults' dead runs sat at 0.001-0.002 for thousands of steps.)
        patience: consecutive checks with a constant output after which the run is declared dead.
    """

    def __init__(self, every_n_steps: int = 25, min_logit_spread: float = 0.01, patience: int = 8) -> None:
        super().__init__()
        if every_n_steps < 0 or patience < 1:
            raise ValueError(
                f"callbacks.training_health: every_n_steps must be >= 0 and patience >= 1, "
                f"got {every_n_steps} and {patience}"
            )
        self.every_n_steps = every_n_steps
        self.min_logit_spread = min_logit_spread
        self.patience = patience
        self.constant_checks = 0
        self._hooks: list[Any] = []
        self._dead_units: dict[str, float] = {}
        self._logit_spread: float | None = None
        self._top_class_share: float | None = None

    # -- measuring ------------------------------------------------------------------------------------
    def _measuring(self, step: int) -> bool:
        return self.every_n_steps > 0 and step % self.every_n_steps == 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._measuring(trainer.global_step):
            return
        net = pl_module.net
        for layer, relu in RELU_OF.items():
            module = _find(net, relu)
            if module is not None:
                self._hooks.append(module.register_forward_hook(self._dead_hook(layer)))
        self._hooks.append(net.register_forward_hook(self._logits_hook))

    def _dead_hook(self, layer: str):  # noqa: ANN202 (a forward hook)
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            with torch.no_grad():
                alive = output.detach() > 0
                if alive.dim() == 4:  # (B, C, H, W): a channel is alive if it fires anywhere
                    alive = alive.any(dim=3).any(dim=2)
                self._dead_units[layer] = 1.0 - alive.any(dim=0).float().mean().item()

        return hook

    def _logits_hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        with torch.no_grad():
            logits = output.detach().float()
            self._logit_spread = logits.std(dim=0).mean().item() if logits.shape[0] > 1 else None
            predicted = logits.argmax(dim=1)
            self._top_class_share = predicted.bincount().max().item() / predicted.numel()

    def _remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self._measuring(trainer.global_step):
            return
        self._remove_hooks()
        lr = optimizer.param_groups[0]["lr"]
        figures: dict[str, float] = {}
        for name in CONV_NAMES + FC_NAMES:
            layer = _find(pl_module.net, name)
            if layer is None or layer.weight.grad is None:
                continue
            grad_norm = layer.weight.grad.detach().float().norm().item()
            weight_norm = layer.weight.detach().float().norm().item()
            figures[f"health/{name}/grad_norm"] = grad_norm
            figures[f"health/{name}/weight_norm"] = weight_norm
            figures[f"health/{name}/update_ratio"] = lr * grad_norm / max(weight_norm, 1e-12)
        figures |= {f"health/{layer}/dead_units": value for layer, value in self._dead_units.items()}
        if self._logit_spread is not None:
            figures["health/logit_spread"] = self._logit_spread
        if self._top_class_share is not None:
            figures["health/top_class_share"] = self._top_class_share
        self._dead_units.clear()
        if trainer.is_global_zero:  # straight to the loggers: Lightning's log_every_n_steps would drop most
            figures["epoch"] = trainer.current_epoch  # as Lightning adds it to every row it logs
            for logger in trainer.loggers:
                logger.log_metrics(figures, step=trainer.global_step)
        self._check_constant_output(trainer, pl_module)

    # -- judging --------------------------------------------------------------------------------------
    def _check_constant_output(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        spread, self._logit_spread = self._logit_spread, None
        if spread is None or spread >= self.min_logit_spread:
            self.constant_checks = 0
            return
        self.constant_checks += 1
        if self.constant_checks >= self.patience:
            steps = self.patience * self.every_n_steps
            self._die(
                trainer,
                pl_module,
                f"the network's output no longer depends on its input: the logits' spread across the batch "
                f"was below {self.min_logit_spread:g} at {self.patience} checks in a row (about {steps} "
                f"steps); last {spread:.3g}",
            )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._remove_hooks()  # a step skipped by the optimiser (e.g. accumulation) left them armed
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            self._die(trainer, pl_module, f"the training loss is {loss.detach().float().item()}")

    def _die(self, trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> None:
        if hasattr(pl_module, "last_step_lr") and trainer.optimizers:  # the warmed-up rate the step used
            lr = pl_module.last_step_lr()
        else:
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan
        message = (
            f"training died at step {trainer.global_step}, epoch {trainer.current_epoch} "
            f"(lr {lr:.3g}): {what}. The checkpoints already written are kept; {WHAT_TO_TRY}."
        )
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(
                    {"health/dead": 1.0, "epoch": trainer.current_epoch}, step=trainer.global_step
                )
                experiment = getattr(logger, "experiment", None)
                summary = getattr(experiment, "summary", None)
                if summary is not None and hasattr(summary, "update"):  # W&B: the run page says why
                    summary.update({"health/died": message})
                logger.save()
            write_atomic(Path(trainer.default_root_dir) / DIED_FILE, message + "\n")
        raise TrainingDiedError(message)


def _find(net: nn.Module, name: str) -> nn.Module | None:
    """The sub-module of ``net`` called ``name`` (``features.conv1``, ``classifier.relu6``, ...)."""
    for parent in ("features", "classifier"):
        module = getattr(getattr(net, parent, None), name, None)
        if module is not None:
            return module
    return None


def exit_when_dead(trainer: L.Trainer, close: Callable[[int], None]) -> AbstractContextManager[None]:
    """After a dead run in the block (``TrainingDiedError``): say why, ``close(3)`` (the loggers), exit with
    ``DIED_EXIT_CODE`` (3)."""
    return exit_on_error(TrainingDiedError, DIED_EXIT_CODE, trainer, close)
