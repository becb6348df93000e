"""Measuring a model file on the MNIST test set: `.keras` or `.tflite`, loaded from disk.

A .tflite file runs on LiteRT alone: TensorFlow and Keras are imported only for a .keras file.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from mnist_opt import runtime
from mnist_opt.errors import InputError
from tuning.data import load_test

SUFFIXES = (".keras", ".tflite")


class Model:
    """A model file that predicts probabilities for uint8 images (N, 28, 28)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix not in SUFFIXES:
            raise InputError(f"model {self.path}: expected a .keras or .tflite file")
        if not self.path.is_file():
            raise InputError(f"model {self.path}: no such file")
        self.bytes = self.path.read_bytes()
        try:
            if self.path.suffix == ".keras":
                runtime.quiet_tensorflow()
                import keras

                self.keras = keras.saving.load_model(self.path, safe_mode=True)
            else:
                from export.litert import Runner

                self.runner = Runner(self.bytes)
        except (ValueError, OSError, RuntimeError) as exc:
            raise InputError(f"model {self.path}: cannot be loaded ({exc})") from exc

    @property
    def kind(self) -> str:
        return self.path.suffix[1:]

    def probabilities(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        x = to_inputs(images)
        if self.kind == "keras":
            return self.keras.predict(x, batch_size=batch_size, verbose=0)
        return np.concatenate([self.runner(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def latency_us(self, image: np.ndarray, runs: int, warmup: int) -> dict:
        """Median and p95 microseconds for one image, batch of 1."""
        x = to_inputs(image[np.newaxis])
        call = (lambda: self.keras(x, training=False)) if self.kind == "keras" else (lambda: self.runner(x))
        for _ in range(warmup):
            call()
        times = []
        for _ in range(runs):
            start = time.perf_counter_ns()
            call()
            times.append((time.perf_counter_ns() - start) / 1000)
        return {"median_us": statistics.median(times), "p95_us": float(np.percentile(times, 95))}


def to_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) to float32 (N, 28, 28, 1) in [0, 1]: `tuning.inputs.to_inputs`, in numpy."""
    return images.astype(np.float32)[..., np.newaxis] / np.float32(255.0)


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
