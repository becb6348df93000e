"""Scores of a model file on the data's test set: accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_opt import data, rundir
from mnist_opt.errors import InputError
from mnist_opt.inference.model import Model


def scores(labels: np.ndarray, predicted: np.ndarray, classes: int) -> dict:
    """Accuracy, per-class accuracy and confusion matrix (rows: true class, columns: predicted)."""
    confusion = np.zeros((classes, classes), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    totals = confusion.sum(axis=1)
    return {
        "accuracy": float((labels == predicted).mean()),
        # None for a class with no images: NaN is not JSON.
        "per_class_accuracy": [round(float(hit / n), 6) if n else None for hit, n in zip(confusion.diagonal(), totals)],
        "confusion": confusion.tolist(),
    }


def evaluate(path: str | Path, source: data.Source | str | None = None) -> dict:
    """Test-set scores of one model file on the data `source` names; by default, the data of the run the file is
    in (MNIST for a file outside a run)."""
    model = Model(path)
    run = rundir.run_of(model.path)
    if source is None and run is not None:  # the run's own data, as it was tuned on
        loaded = data.load(data.Source.of(rundir.tune_settings(run)))
        data.check_recorded(loaded.info, rundir.data_sha256(run), str(run))
    else:
        loaded = data.load(source)
    x, y, names = loaded.arrays["x_test"], loaded.arrays["y_test"], loaded.info.class_names
    if model.input_shape != loaded.info.shape or model.classes != len(names):
        raise InputError(f"model {model.path} takes {'x'.join(map(str, model.input_shape))} images in {model.classes} "
                         f"classes, but the data {loaded.info.source} has {'x'.join(map(str, loaded.info.shape))} "
                         f"images in {len(names)}: pass the --data (and --image-size) the model was tuned on")
    predicted = model.probabilities(x).argmax(1)
    return {"model": str(model.path), "kind": model.kind, "images": len(y), "class_names": list(names),
            **scores(y, predicted, len(names))}
