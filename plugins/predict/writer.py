"""``core-train predict``: per-sample outputs of a checkpoint, written to HDF5 batch by batch
(:func:`predict`).

The file holds one group per dataset with, for every sample of the split in order:
``index`` (the sample's position in the split), each head's ``<head>/logits``,
``<head>/predicted`` (argmax; per time step for outputs over time), ``<head>/label`` when the
split has labels, ``<head>/per_class_accuracy`` (classes,) for predicted heads, ``responses`` for
response models, and with ``--record`` the activations of the named modules of the model
(``record/<name>``: what seeds keep as model responses for analysis). When the data selects
classes (``classes``, ``group``, ``label_map``: plugin ``class_groups``), each such head's group
has the attribute ``label_map`` (JSON: each id's original ids and names) and, per sample,
``predicted_original`` and ``label_original`` (when each id stands for one original class)
and ``predicted_name`` (when the classes have names). Datasets grow as
batches arrive (chunked, resizable), so nothing is held in RAM beyond one batch; the file
is written under a temporary name in the same folder and moved into place at the end.
Attributes: ``split``, ``checkpoint``, ``run``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from core.errors import ConfigError, did_you_mean
from core.evaluate import check_split, evaluator, trained_modules
from core.kinds import wrappers
from core.resolve import ResolvedRun


class ActivationRecorder:
    """Forward hooks keeping the latest output of each named module of ``model``."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules:
                raise ConfigError("--record", f"the model has no module '{name}'{did_you_mean(name, modules)}",
                                  fix="name modules as printed by: python -c \"import core; print(core.load_run("
                                      "'RUN_DIR').module.model)\" (e.g. features.0, heads.digit)")
        self.names, self.latest = names, {}
        self.hooks = [modules[name].register_forward_hook(self._keeper(name)) for name in names]

    def _keeper(self, name: str) -> Any:
        def keep(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            self.latest[name] = tensor.detach().clone()  # an in-place op after the module (ReLU) would change it
        return keep

    def take(self) -> dict[str, torch.Tensor]:
        """The outputs of the last forward pass; a module it did not call (a container such as
        ``heads``) is a config error, not a file without its record."""
        missing = [name for name in self.names if name not in self.latest]
        if missing:
            raise ConfigError("--record", f"the model's forward pass does not call {', '.join(map(repr, missing))} "
                              "(a container of modules records nothing)",
                              fix="record the modules it calls, e.g. heads.<head> instead of heads")
        taken, self.latest = self.latest, {}
        return taken

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


class PredictionWriter(BasePredictionWriter):
    """Appends each predicted batch to an HDF5 file (``path``, moved into place by ``close``);
    ``classes`` holds each dataset's class maps (``{dataset: {head: map}}``, :meth:`core.FormatWrapper.class_maps`)."""

    def __init__(self, path: Path, split: str, attrs: dict[str, str], recorder: ActivationRecorder | None,
                 classes: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(write_interval="batch")
        import h5py

        self.path, self.recorder, self.classes = path, recorder, classes or {}
        self.partial = path.with_name(f".{path.name}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.partial, "w")
        self.file.attrs.update({"split": split, **attrs})
        self.counts: dict[str, int] = {}

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any,
                           batch_idx: int, dataloader_idx: int = 0) -> None:
        name, size = prediction["dataset"] or "data", prediction["size"]
        start = self.counts.get(name, 0)
        arrays = {"index": torch.arange(start, start + size)}
        for key, out in prediction["outputs"].items():
            if key == "responses":
                arrays["responses"] = out
            else:
                arrays[f"{key}/logits"], arrays[f"{key}/predicted"] = out, out.argmax(-1)
        arrays |= {f"{head}/label": label for head, label in prediction["labels"].items()}
        if self.recorder is not None:
            arrays |= {f"record/{k}": v for k, v in self.recorder.take().items()}
        group = self.file.require_group(name)
        for head, mapping in self.classes.get(prediction["dataset"], {}).items():
            if f"{head}/predicted" in arrays:
                arrays |= _originals(group, head, mapping, arrays)
        for key, value in arrays.items():
            _append(group, key, value)
        self.counts[name] = start + size

    def close(self, ok: bool) -> None:
        try:
            if ok:
                per_class_accuracy(self.file)
        except BaseException:
            ok = False
            raise
        finally:
            self.file.close()
            if ok:
                os.replace(self.partial, self.path)
            else:
                self.partial.unlink(missing_ok=True)


def per_class_accuracy(file: Any) -> None:
    """``<head>/per_class_accuracy`` (classes,) of every head the model predicts that has labels:
    torchmetrics' per-class accuracy, updated chunk by chunk from the file (labels -1 do not
    count). A label the model does not predict (a session's ``label`` beside its responses) is
    written as it is."""
    from torchmetrics.classification import MulticlassAccuracy

    for group in file.values():
        for head in [k for k in group if isinstance(group[k], type(group)) and {"label", "logits"} <= set(group[k])]:
            logits, labels = group[head]["logits"], group[head]["label"]
            if logits.ndim != 2:  # outputs over time: one label per sample, per-step accuracy is in experiment.csv
                continue
            metric = MulticlassAccuracy(num_classes=logits.shape[1], average=None, ignore_index=-1)
            for start in range(0, len(labels), 65536):
                window = slice(start, start + 65536)
                metric.update(torch.from_numpy(logits[window]), torch.from_numpy(labels[window]))
            group[head].create_dataset("per_class_accuracy", data=metric.compute().numpy())


def _originals(group: Any, head: str, mapping: Any, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """A selected head's original classes: the map as an attribute, each sample's original ids and names."""
    import json

    attrs = group.require_group(head).attrs
    if "label_map" not in attrs:
        attrs["label_map"] = json.dumps(mapping.describe())
    predicted = arrays[f"{head}/predicted"].cpu().numpy()
    out: dict[str, np.ndarray] = {}
    inverse = mapping.inverse()
    if inverse is not None:
        out[f"{head}/predicted_original"] = inverse[predicted]
        if f"{head}/label" in arrays:
            label = arrays[f"{head}/label"].cpu().numpy()
            out[f"{head}/label_original"] = np.where(label >= 0, inverse[np.clip(label, 0, len(inverse) - 1)], -1)
    names = mapping.new_names()
    if names is not None:
        out[f"{head}/predicted_name"] = np.array(names, dtype=object)[predicted]
    return out


def _append(group: Any, key: str, value: torch.Tensor | np.ndarray) -> None:
    import h5py

    array = value if isinstance(value, np.ndarray) else (value.float() if value.is_floating_point() else value).cpu().numpy()
    if key not in group:
        group.create_dataset(key, data=array, maxshape=(None, *array.shape[1:]),
                             chunks=(max(1, min(len(array), 1024)), *array.shape[1:]),
                             dtype=h5py.string_dtype() if array.dtype == object else None)
        return
    dataset = group[key]
    start = dataset.shape[0]
    dataset.resize(start + len(array), axis=0)
    dataset[start:] = array


def predict(resolved: ResolvedRun, run_dir: Path, checkpoint: str | None, split: str, record: list[str],
            output: Path | None) -> Path:
    """Write every sample's outputs on ``split`` (and the ``record``ed activations) to HDF5."""
    check_split(resolved, split, "--split")
    datamodule, module, path = trained_modules(resolved, run_dir, checkpoint)
    datamodule.predict_split = split
    recorder = ActivationRecorder(module.model, record) if record else None
    target = output or run_dir / "predictions" / f"{split}.h5"
    classes = {d.meta.name: {head: m for w in reversed(wrappers(d.fmt)) for head, m in w.class_maps().items()}
               for d in resolved.datasets}
    writer = PredictionWriter(target, split, {"checkpoint": str(path), "run": resolved.config.name}, recorder, classes)
    ok = False
    try:
        with warnings.catch_warnings():  # the writer counts samples itself; Lightning's batch indices are not needed
            warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
            evaluator(resolved, [writer]).predict(module, datamodule=datamodule, return_predictions=False)
        ok = True
    finally:
        writer.close(ok)
        if recorder is not None:
            recorder.remove()
    return target
