"""Parameters and int8 file size of `build_cnn(values)`, computed without building the model.

What --max-params and --max-kb check before a trial pays for a graph.
"""

from __future__ import annotations

from mnist_opt.tuning.architecture import INPUT_SHAPE, NUM_CLASSES, architecture, layer_plan

# What the estimate promises: within this fraction of the int8 file's bytes on every layer kind
# (tests/test_hypermodel.py and test_layer_kinds.py hold it to this; docs/performance.md has the fit).
ESTIMATE_ERROR = 0.05


def _weight_layers(values: dict):
    """(kind, weights, units) of each conv, depthwise and dense layer of `build_cnn(values)`, in order."""
    v = architecture(values)
    side, channels = INPUT_SHAPE[0], INPUT_SHAPE[-1]
    for kind, _, kernel, stride, filters in layer_plan(v):
        if kind == "pool":
            side //= 2
            continue
        side = -(-side // stride)  # "same" padding
        weights = kernel * kernel * (1 if kind == "depthwise" else channels) * filters
        yield kind, weights, filters
        channels = filters
    features = channels if v["global_pooling"] else side * side * channels
    for units in ([v["dense_units"]] if v["dense_units"] > 0 else []) + [NUM_CLASSES]:
        yield "dense", features * units, units
        features = units


def count_params(values: dict) -> int:
    """Parameters of `build_cnn(values)`, computed without building it.

    Lets the tuner skip over-budget trials before paying for a graph.
    """
    bn = values["batch_norm"]
    # A conv with batch norm has no bias but 4 values per channel (gamma, beta, moving mean and variance).
    return sum(w + (4 * units if bn and kind != "dense" else units) for kind, w, units in _weight_layers(values))


# The int8 .tflite file, fitted (least squares) to models of the five built-in spaces converted with
# random weights, which give the trained model's size (`mnist_opt.export.file_size.int8_bytes`): one
# byte per weight, bytes per output channel (int32 bias, per-channel scale and zero point), per conv,
# dense and pooling op, and a fixed part. The fit and its error: docs/performance.md.
INT8_FIXED_BYTES = 1470
INT8_BYTES_PER_CHANNEL = 26
INT8_BYTES_PER_CONV = 550
INT8_BYTES_PER_DENSE = 700
INT8_BYTES_PER_POOL = 85


def estimate_int8_bytes(values: dict) -> int:
    """Size of the full-integer .tflite file of `build_cnn(values)`, estimated without building it.

    Batch norm is folded into the convs by the converter, so it adds no bytes.
    """
    pools = sum(kind == "pool" for kind, *_ in layer_plan(architecture(values)))
    return INT8_FIXED_BYTES + INT8_BYTES_PER_POOL * pools + sum(
        w + INT8_BYTES_PER_CHANNEL * units + (INT8_BYTES_PER_DENSE if kind == "dense" else INT8_BYTES_PER_CONV)
        for kind, w, units in _weight_layers(values))
