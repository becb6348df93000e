"""A model file loaded from disk: `.keras` or `.tflite`, predicting probabilities for uint8 images.

A .tflite file runs on LiteRT alone: TensorFlow and Keras are imported only for a .keras file.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from mnist_opt import runtime
from mnist_opt.errors import InputError

SUFFIXES = (".keras", ".tflite")


class Model:
    """A model file that predicts probabilities for uint8 images (N, H, W, C), or (N, H, W) grey."""

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
                from mnist_opt.export.litert import Runner

                self.runner = Runner(self.bytes)
        except (ValueError, OSError, RuntimeError) as exc:
            raise InputError(f"model {self.path}: cannot be loaded ({exc})") from exc

    @property
    def kind(self) -> str:
        return self.path.suffix[1:]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the images the model takes."""
        shape = self.keras.input_shape if self.kind == "keras" else self.runner.input["shape"]
        return tuple(int(s) for s in shape[1:])

    @property
    def classes(self) -> int:
        return int(self.keras.output_shape[-1] if self.kind == "keras" else self.runner.output["shape"][-1])

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
    """uint8 images (N, H, W, C), or (N, H, W) grey, to float32 (N, H, W, C) in [0, 1]:
    `mnist_opt.tuning.inputs.to_inputs`, in numpy."""
    x = images.astype(np.float32) / np.float32(255.0)
    return x[..., np.newaxis] if x.ndim == 3 else x
