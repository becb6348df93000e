"""Running .tflite bytes with LiteRT: floats in, probabilities out, whatever the file's quantization.

LiteRT, numpy and nothing else: `predict`, `evaluate` and `serve` on .tflite files never import
TensorFlow (seconds and hundreds of MB for one image).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from mnist_opt.runtime import silenced_stderr


def to_int8(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """Floats to a full-integer model's int8 input, with its scale and zero point."""
    return np.clip(np.round(x.astype(np.float32) / scale + zero), -128, 127).astype(np.int8)


def from_int8(y: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """A full-integer model's int8 output back to floats."""
    return (y.astype(np.float32) - zero) * scale


class Runner:
    """A LiteRT interpreter over one .tflite model that takes and returns floats.

    Full-integer models take int8: inputs are quantized with the model's own
    scale and zero point, outputs dequantized, so callers never see the difference.
    """

    def __init__(self, model: bytes, threads: int | None = None, xnnpack: bool = True):
        # xnnpack=False: LiteRT's own kernels, without the XNNPACK delegate it applies by default.
        # XNNPACK requantizes int8 in float32 and LiteRT's kernels (like TFLite Micro's) in fixed
        # point: their scores differ by a few steps, and a near-tie can change the answer.
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        with silenced_stderr():
            self.interpreter = Interpreter(model_content=model, num_threads=threads,
                                           experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = None

    @property
    def input_dtype(self):
        return np.dtype(self.input["dtype"])

    def _resize(self, n: int) -> None:
        if self.batch != n:
            self.interpreter.resize_tensor_input(self.input["index"], [n, *self.input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.batch = n

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for float images (N, H, W, C) in [0, 1]."""
        self._resize(len(images))
        x = images.astype(np.float32)
        scale, zero = self.input["quantization"]
        if self.input_dtype == np.int8:
            x = to_int8(x, scale, zero)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        scale, zero = self.output["quantization"]
        if np.dtype(self.output["dtype"]) == np.int8:
            y = from_int8(y, scale, zero)
        return y


def predict(model: bytes, images: np.ndarray, batch_size: int = 1000, xnnpack: bool = True) -> np.ndarray:
    """Probabilities for float images, in batches."""
    run = Runner(model, xnnpack=xnnpack)
    return np.concatenate([run(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
