"""Keras model to TFLite bytes (`convert`), and running those bytes with LiteRT (`predict`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from mnist_opt.runtime import silenced_stderr
from tuning.hypermodel import INPUT_SHAPE

QUANTIZATIONS = ("none", "dynamic_range", "float16", "int8")


def convert(model, quantization: str, representative: np.ndarray | None = None) -> bytes:
    """Convert a Keras (3 or tf_keras) model taking 28x28x1 floats in [0, 1] to a .tflite flatbuffer.

    quantization: "none" (float32), "dynamic_range" (int8 weights), "float16"
    (float16 weights), or "int8" (int8 weights and activations, int8 input and
    output, calibrated on `representative` images).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization: expected one of {QUANTIZATIONS}, got {quantization!r}")
    serve = tf.function(lambda x: model(x, training=False))
    concrete = serve.get_concrete_function(tf.TensorSpec((None, *INPUT_SHAPE), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if representative is None:
            raise ValueError("int8 quantization needs representative images")

        def calibration():
            for image in representative:
                yield [image[np.newaxis].astype(np.float32)]

        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with silenced_stderr():
        return converter.convert()


class Runner:
    """A LiteRT interpreter over one .tflite model that takes and returns floats.

    Full-integer models take int8: inputs are quantized with the model's own
    scale and zero point, outputs dequantized, so callers never see the difference.
    """

    def __init__(self, model: bytes, threads: int | None = None):
        with silenced_stderr():
            self.interpreter = Interpreter(model_content=model, num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = None

    @property
    def input_dtype(self):
        return np.dtype(self.input["dtype"])

    def _resize(self, n: int) -> None:
        if self.batch != n:
            self.interpreter.resize_tensor_input(self.input["index"], [n, *INPUT_SHAPE])
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.batch = n

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, 10) for float images (N, 28, 28, 1) in [0, 1]."""
        self._resize(len(images))
        x = images.astype(np.float32)
        scale, zero = self.input["quantization"]
        if self.input_dtype == np.int8:
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        scale, zero = self.output["quantization"]
        if np.dtype(self.output["dtype"]) == np.int8:
            y = (y.astype(np.float32) - zero) * scale
        return y


def predict(model: bytes, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Probabilities for float images, in batches."""
    run = Runner(model)
    return np.concatenate([run(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
