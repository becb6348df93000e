"""Scores of a model file on the MNIST test set: accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_opt.data import load_test
from mnist_opt.inference.model import Model


def scores(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, per-class accuracy and confusion matrix (rows: true digit, columns: predicted)."""
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    totals = confusion.sum(axis=1)
    return {
        "accuracy": float((labels == predicted).mean()),
        # None for a digit with no images: NaN is not JSON.
        "per_class_accuracy": [round(float(hit / n), 6) if n else None for hit, n in zip(confusion.diagonal(), totals)],
        "confusion": confusion.tolist(),
    }


def evaluate(path: str | Path, data_path: str | None = None) -> dict:
    """Test-set scores of one model file."""
    model = Model(path)
    x, y = load_test(data_path)
    predicted = model.probabilities(x).argmax(1)
    return {"model": str(model.path), "kind": model.kind, "images": len(y), **scores(y, predicted)}
