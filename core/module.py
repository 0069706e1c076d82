"""The generic LightningModule: label heads, neural responses, or both.

Heads come from the format's metadata; the loss is the ``loss_weights``-weighted sum of
one cross-entropy per head the model predicts (labels equal to ``IGNORE_INDEX`` do not
count) and, when the model predicts ``responses``, its response loss (Poisson or MSE, see
:mod:`core.responses`). Metrics: ``<stage>/loss``, ``<stage>/<head>_acc``,
``<stage>/<head>_loss``, ``<stage>/<head>_top5`` (heads of 10 classes or more; computed
here on the device: torchmetrics' multiclass scores use ``bincount``, which waits for the
GPU), ``<stage>/acc`` (several heads: loss-weighted mean), and for
responses ``<stage>/<dataset>/loss``, ``<stage>/<dataset>/corr`` (mean per-neuron
correlation over the epoch) and their average ``<stage>/corr``.
"""

from __future__ import annotations

import math
from typing import Any

import lightning
import torch
import torch.nn.functional as F

from core.config import OptimSection
from core.kinds import Batch
from core.responses import Correlations, response_loss

IGNORE_INDEX = -1


class EpochMeans:
    """Batch-size-weighted means over an epoch, summed on the device: nothing is read per step."""

    def __init__(self) -> None:
        self.sums: dict[str, tuple[torch.Tensor, int]] = {}

    def reset(self) -> None:
        self.sums = {}

    def add(self, name: str, value: torch.Tensor, size: int) -> None:
        weighted = value.detach().float() * size
        total, count = self.sums.get(name, (0.0, 0))
        self.sums[name] = (weighted + total, count + size)

    def means(self) -> dict[str, torch.Tensor]:
        return {name: total / count for name, (total, count) in self.sums.items()}


TOP_K_FROM = 10  # heads with this many classes or more also get top-5 accuracy


def top5(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The share of (counted) samples whose label is among the 5 highest logits; on the device."""
    valid = target != IGNORE_INDEX
    hit = (out.topk(5, dim=-1).indices == target[:, None]).any(-1) & valid
    return hit.sum() / valid.sum().clamp(min=1)


def log_epoch_now(trainer: Any) -> None:
    """Hand the epoch's logged metrics to the loggers now, as Lightning does after the epoch's
    last hooks (it then finds nothing left to hand over)."""
    connector, loop = trainer._logger_connector, trainer.fit_loop.epoch_loop
    connector.on_epoch_end()
    loop._batches_that_stepped -= 1  # Lightning logs an epoch's rows at its last step
    connector.update_train_epoch_metrics()
    loop._batches_that_stepped += 1


def logging_now(trainer: Any) -> bool:
    """Whether Lightning writes step metrics after this training step (every ``log_every_n_steps``)."""
    return bool(trainer._logger_connector.should_update_logs)


class MultiHeadClassifier(lightning.LightningModule):
    """``config`` (the run's resolved config as a dict) is saved in every checkpoint, so
    ``MultiHeadClassifier.load_from_checkpoint(path)`` rebuilds the model through the plugins
    (reading the data's metadata, as ``--dry-run`` does) and loads the weights."""

    def __init__(self, model: torch.nn.Module | None = None, heads: dict[str, int] | None = None,
                 loss_weights: dict[str, float] | None = None, optim: OptimSection | None = None,
                 config: dict[str, Any] | None = None, datasets_read: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        if model is None:
            if config is None:
                raise TypeError("MultiHeadClassifier needs a model and its heads, or a run's config")
            model, heads, loss_weights, optim = _parts_of(config)
        if config is not None:
            self.save_hyperparameters({"config": config, "datasets_read": datasets_read})  # core.datasets.read_from_dir
        heads, loss_weights, optim = heads or {}, loss_weights or {}, optim or OptimSection()
        self.model = model
        self.heads = dict(heads)
        self.loss_weights = dict(loss_weights)
        self.optim = optim
        self.first_head = next(iter(self.heads), None)
        self.predicts_responses = bool(getattr(model, "predicts_responses", False))
        # what the best checkpoint is chosen by, and its best value so far (a buffer: a resumed run remembers it)
        # (several heads: their loss-weighted mean accuracy, val/acc)
        self.monitor = "val/corr" if self.predicts_responses or self.first_head is None else \
            f"val/{self.first_head}_acc" if len(self.heads) == 1 else "val/acc"
        self.best_key = "val/corr_best" if self.monitor == "val/corr" else "val/acc_best"  # logged after training
        self.register_buffer("best_val_acc", torch.tensor(float("-inf")))
        self.correlations = Correlations()
        self.train_means = EpochMeans()
        self._means_epoch: int | None = None  # the epoch whose training sums a checkpoint restored
        self._first_nonfinite: dict[str, torch.Tensor] = {}  # dataset -> first step with a non-finite loss, or -1

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        logits = self(batch)
        size = len(batch["stim"])
        total = torch.zeros((), device=self.device)
        if self.predicts_responses:
            name = batch["dataset"]
            loss = response_loss(logits["responses"], batch["responses"], getattr(self.model, "loss", "poisson"))
            total = total + self.loss_weights.get("responses", 1.0) * loss
            self._record(f"{stage}/{name}/loss", loss, size)
            if stage != "train":
                self.correlations.add(name, logits["responses"].detach(), batch["responses"])
        for head, weight in self.loss_weights.items():
            if head not in logits or head == "responses" or head not in batch:
                continue
            loss, acc = self._head(logits[head], batch[head], batch.get("stim_on"), f"{stage}/{head}", stage != "train")
            total = total + weight * loss
            self._record(f"{stage}/{head}_acc", acc, size)
            self._record(f"{stage}/{head}_loss", loss, size)
            if logits[head].dim() == 2 and logits[head].shape[-1] >= TOP_K_FROM:
                self._record(f"{stage}/{head}_top5", top5(logits[head], batch[head]), size)
        if stage != "train":
            self.log(f"{stage}/loss", total, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
            return total
        self.train_means.add("train/loss_epoch", total, size)
        self._watch_finite(total, batch.get("dataset", ""))
        if logging_now(self.trainer):  # the step's loss goes to the loggers at their interval only
            self.log("train/loss_step", total, on_step=True, on_epoch=False, batch_size=size, logger=False)
            # handed over within the step, not after its checkpoints as Lightning would: a kill
            # right after a checkpoint taken at this step's end would otherwise lose the row
            self.trainer._logger_connector.log_metrics({"train/loss_step": total.detach()})
            self._check_finite()
        return total

    def _watch_finite(self, loss: torch.Tensor, dataset: str) -> None:
        """Note, on the device, the first step whose loss is not finite (per dataset)."""
        step = torch.full((), self.global_step, device=loss.device, dtype=torch.long)
        first = self._first_nonfinite.get(dataset, torch.full((), -1, device=loss.device, dtype=torch.long))
        self._first_nonfinite[dataset] = torch.where(~torch.isfinite(loss.detach()) & (first < 0), step, first)

    def _check_finite(self) -> None:
        """At the logging interval and the epoch's end: stop at a non-finite loss (one read)."""
        if not self._first_nonfinite:
            return
        names = list(self._first_nonfinite)
        steps = torch.stack([self._first_nonfinite[n] for n in names])
        if int(steps.max()) >= 0:  # the one value read (the rest only when training stops)
            bad = [(int(step), name) for step, name in zip(steps, names) if step >= 0]
            from core.errors import DataError

            step, name = min(bad)
            where = f" on dataset '{name}'" if name else ""
            raise DataError(f"training stopped: the loss is not finite (nan or inf) at epoch {self.current_epoch}, "
                            f"step {step}{where}; check the data for non-finite values (core-data validate), or "
                            "lower optim.lr; continue from the last good checkpoint with --resume")

    def _record(self, name: str, value: torch.Tensor, size: int) -> None:
        """A per-epoch metric: evaluation logs it through Lightning (reduced across ranks); training
        adds it to ``train_means``, logged at the epoch's end (Lightning's ``log`` costs far more
        per call than the two additions, and training steps are many)."""
        if name.startswith("train/"):
            self.train_means.add(name, value, size)
        else:
            self.log(name, value, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        if self._means_epoch != self.current_epoch:  # a run resumed within an epoch keeps that epoch's sums
            self.train_means.reset()
        self._means_epoch = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sums = {name: [total, count] for name, (total, count) in self.train_means.sums.items()}
        checkpoint["train_means"] = {"epoch": self.current_epoch, "sums": sums}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("train_means", {})
        self.train_means.sums = {name: (total, count) for name, (total, count) in saved.get("sums", {}).items()}
        self._means_epoch = saved.get("epoch")

    def on_train_start(self) -> None:
        """A resumed run trained longer than first planned: the cosine schedule stretches to the new length."""
        epochs = max(1, self.trainer.max_epochs or 1)
        for config in self.trainer.lr_scheduler_configs:
            schedule = config.scheduler
            if isinstance(schedule, torch.optim.lr_scheduler.CosineAnnealingLR) and schedule.T_max != epochs:
                schedule.T_max = epochs
                for group, base in zip(schedule.optimizer.param_groups, schedule.base_lrs):
                    group["lr"] = schedule.eta_min + (base - schedule.eta_min) * (
                        1 + math.cos(math.pi * schedule.last_epoch / epochs)) / 2

    def on_train_epoch_end(self) -> None:
        self._check_finite()
        for name, value in self.train_means.means().items():
            self.log(name, value)
        # the epoch's rows go to the loggers now, before the epoch's checkpoint is written
        # (Lightning would hand them over just after it: a kill in between lost them)
        log_epoch_now(self.trainer)

    def _head(self, out: torch.Tensor, target: torch.Tensor, on: torch.Tensor | None, name: str,
              evaluating: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One head's cross-entropy and accuracy over the samples (and time steps) that count."""
        if out.dim() == 2:
            valid = target != IGNORE_INDEX
            correct = (out.argmax(-1) == target) & valid
            return F.cross_entropy(out.float(), target, ignore_index=IGNORE_INDEX), correct.sum() / valid.sum().clamp(min=1)
        # (B, T, classes): a readout at every time step. The steps that count are weighted by 1,
        # the others by 0 (a boolean mask would give a data-dependent shape: a host sync)
        target, counted = self._over_time(out, target, on, name, evaluating)
        counted = counted & (target != IGNORE_INDEX)
        per_step = F.cross_entropy(out.float().flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
        weight = counted.flatten().to(per_step.dtype)
        n = weight.sum().clamp(min=1)
        correct = (out.argmax(-1) == target) & counted
        return (per_step * weight).sum() / n, correct.sum() / n

    def _over_time(
        self, out: torch.Tensor, labels: torch.Tensor, on: torch.Tensor | None, name: str, per_step: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each step's target (the sample's label) and which steps the loss sees (the model's
        ``loss_on``: ``stimulus`` steps, ``all`` steps, or the ``last``), both (B, T).
        With ``per_step``, log the accuracy at every step as ``<name>_acc_step<t>``."""
        b, t = out.shape[:2]
        if on is None:
            on = torch.ones(b, t, dtype=torch.bool, device=out.device)
        # per-step labels hold the void label off-stimulus: the sample's label is the one at its first shown step
        sample = labels.gather(1, on.float().argmax(1, keepdim=True)).squeeze(1) if labels.dim() == 2 else labels
        target = sample[:, None].expand(b, t)
        if per_step:
            accuracy = (out.argmax(-1) == target).float().mean(0)
            for step in range(t):
                self.log(f"{name}_acc_step{step}", accuracy[step], on_step=False, on_epoch=True, batch_size=b, sync_dist=True)
        loss_on = getattr(self.model, "loss_on", "stimulus")
        if loss_on == "all":
            return target, torch.ones_like(on)
        if loss_on == "last":
            last = torch.zeros_like(on)
            last[:, -1] = True
            return target, last
        return target, on

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self.correlations.reset()

    def on_test_epoch_start(self) -> None:
        self.correlations.reset()

    def _log_correlations(self, stage: str) -> None:
        if not self.predicts_responses:
            return
        reduce = self.trainer.strategy.reduce if self.trainer.world_size > 1 else None
        per_dataset = self.correlations.compute(reduce)
        for name, value in per_dataset.items():
            self.log(f"{stage}/{name}/corr", value)
        if per_dataset:
            self.log(f"{stage}/corr", torch.stack(list(per_dataset.values())).mean())

    def on_validation_epoch_end(self) -> None:
        self._log_correlations("val")
        if self.monitor == "val/acc":
            self._log_mean_accuracy("val")
        if self.trainer.sanity_checking:
            return
        current = self.trainer.callback_metrics.get(self.monitor)
        if current is not None:
            self.best_val_acc = torch.maximum(self.best_val_acc, current.detach().to(self.best_val_acc))
            self.log(self.best_key, self.best_val_acc, sync_dist=True)

    def _log_mean_accuracy(self, stage: str) -> None:
        """``<stage>/acc``: the heads' accuracies weighted by their loss weights (equal if all are 0)."""
        metrics = self.trainer.callback_metrics
        found = {h: metrics[f"{stage}/{h}_acc"] for h in self.heads if f"{stage}/{h}_acc" in metrics}
        if not found:
            return
        weights = {h: self.loss_weights.get(h, 1.0) for h in found}
        if not any(weights.values()):
            weights = dict.fromkeys(found, 1.0)
        mean = sum(weights[h] * found[h].float() for h in found) / sum(weights.values())
        self.log(f"{stage}/acc", mean)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """The model's outputs for a batch, the batch's labels and its dataset name."""
        labels = {head: batch[head] for head in self.heads if head in batch}
        return {"dataset": batch.get("dataset", ""), "size": len(batch["stim"]), "outputs": self(batch), "labels": labels}

    def on_test_epoch_end(self) -> None:
        self._log_correlations("test")
        if self.monitor == "val/acc":
            self._log_mean_accuracy("test")

    def configure_optimizers(self) -> Any:
        o = self.optim
        params = self.parameters()
        if o.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        else:
            cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
            optimizer = cls(params, lr=o.lr, weight_decay=o.weight_decay)
        if o.scheduler == "none":
            return optimizer
        if o.scheduler == "linear_warmup_cosine":
            from core.schedules import linear_warmup_cosine

            steps = self.trainer.estimated_stepping_batches
            if not math.isfinite(steps):
                from core.errors import ConfigError

                raise ConfigError("optim.scheduler", "linear_warmup_cosine needs the run's length in steps, and this "
                                  "run's training data has no known length (a stream without a sidecar, or one "
                                  "that may skip bad samples)", fix="set trainer.max_steps, or use scheduler: cosine")
            total = max(1, int(steps))
            scheduler = linear_warmup_cosine(optimizer, o.warmup_steps, total, o.min_lr / o.lr)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if o.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs or 1))
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_size, gamma=o.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _parts_of(config: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, int], dict[str, float], OptimSection]:
    """A run's model, heads, loss weights and optimiser settings, rebuilt from its config."""
    from core.config import parse_config
    from core.kinds import restoring
    from core.registry import Registry
    from core.resolve import resolve

    run = parse_config(config)
    with restoring():  # load_from_checkpoint: the checkpoint's weights follow
        resolved = resolve(run, Registry.of_run(run))
    return resolved.model, resolved.heads, resolved.loss_weights, run.optim
