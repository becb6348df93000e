"""Keras model to TFLite bytes (`convert`); `export.litert` runs them."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mnist_opt.runtime import silenced_stderr

QUANTIZATIONS = ("none", "dynamic_range", "float16", "int8")


def convert(model, quantization: str, representative: np.ndarray | None = None) -> bytes:
    """Convert a Keras (3 or tf_keras) model taking H x W x C floats in [0, 1] to a .tflite flatbuffer.

    quantization: "none" (float32), "dynamic_range" (int8 weights), "float16"
    (float16 weights), or "int8" (int8 weights and activations, int8 input and
    output, calibrated on `representative` images).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization: expected one of {QUANTIZATIONS}, got {quantization!r}")
    serve = tf.function(lambda x: model(x, training=False))
    concrete = serve.get_concrete_function(tf.TensorSpec((None, *model.input_shape[1:]), tf.float32))
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
