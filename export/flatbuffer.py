"""What a .tflite file holds, read from its flatbuffer: the ops it runs and its weight tensors.

The figures the manifest gives for clustering and pruning (`kernels`) are measured here, on the
file that ships, not on the Keras model it came from: conversion folds batch norm into the conv
kernels and quantizes them per output channel, and that is what a device stores.
"""

from __future__ import annotations

import functools

import numpy as np

from mnist_opt import workarounds


@functools.cache
def _op_names() -> dict[int, str]:
    ops_enum = workarounds.tflite_schema().fb.BuiltinOperator
    return {code: name for name, code in vars(ops_enum).items() if not name.startswith("_")}


def _model(model: bytes):
    # tflite-micro's reader of the TFLite schema, which it does not document (workaround 'tflm-flatbuffer-schema')
    return workarounds.tflite_schema().to_object(bytearray(model))


def ops(model: bytes) -> list[str]:
    """The op names the file uses (e.g. CONV_2D; a custom op by its name, e.g. TFLM_DECODE), sorted."""
    codes = _model(model).operatorCodes or []
    s = workarounds.tflite_schema()
    custom = s.fb.BuiltinOperator.CUSTOM
    return sorted({c.customCode.decode() if s.builtin_code(c) == custom and c.customCode else
                   _op_names().get(s.builtin_code(c), "CUSTOM") for c in codes})


def layer_name(tensor_name: str) -> str:
    """'cnn/quant_conv1_0/Conv2D;cnn/...' -> 'conv1_0': the Keras layer a kernel came from."""
    parts = tensor_name.split(";")[0].split("/")
    return (parts[1] if len(parts) > 1 else parts[0]).removeprefix("quant_")


def kernels(model: bytes, min_weights: int) -> dict[str, dict]:
    """The int8 weight tensors of at least `min_weights` values, by layer name.

    weights: how many values; zeros: their fraction of exact zeros. distinct: the most distinct int8 values in one output
    channel (the quantized dimension): a kernel clustered to N values has at most N in each.
    """
    m = _model(model)
    int8 = workarounds.tflite_schema().fb.TensorType.INT8
    out = {}
    for t in m.subgraphs[0].tensors:
        data = m.buffers[t.buffer].data
        if t.type != int8 or data is None or len(t.shape) not in (2, 4) or len(data) < min_weights:
            continue
        w = np.asarray(data, dtype=np.uint8).view(np.int8).reshape(t.shape)
        axis = t.quantization.quantizedDimension if t.quantization is not None else 0
        channels = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        name = layer_name(t.name.decode())
        if name in out:  # two kernels whose names start alike: keep both
            name = f"{name}#{len(out)}"
        out[name] = {
            "weights": int(w.size),
            "zeros": round(float((w == 0).mean()), 4),
            "distinct": int(max(np.unique(c).size for c in channels)),
        }
    return out


def sparsity(kernel_stats: dict[str, dict]) -> float:
    """Fraction of zeros over all the kernels of `kernels(...)`, weighted by their sizes."""
    total = sum(k["weights"] for k in kernel_stats.values())
    return round(sum(k["zeros"] * k["weights"] for k in kernel_stats.values()) / total, 4) if total else 0.0
