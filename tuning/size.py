"""Parameters, multiply-accumulates and flash size of `build_cnn(values)`, computed without building the model.

What --max-params, --max-macs and --max-kb check before a trial pays for a graph.
"""

from __future__ import annotations

import math

from mnist_opt.tuning.architecture import architecture, input_shape, layer_plan

# What the estimate promises: within this fraction of the flash form's bytes on every layer kind
# (tests/test_hypermodel.py and test_layer_kinds.py hold it to this; docs/performance.md has the fit).
ESTIMATE_ERROR = 0.05


def _weight_layers(values: dict):
    """(kind, weights, units, positions) of each conv, depthwise and dense layer of `build_cnn(values)`, in order;
    `positions`: the output pixels each weight is applied at (1 for a dense layer)."""
    v = architecture(values)
    height, width, channels = input_shape(v)
    for kind, _, kernel, stride, filters in layer_plan(v):
        if kind == "pool":
            height, width = height // 2, width // 2
            continue
        height, width = -(-height // stride), -(-width // stride)  # "same" padding
        weights = kernel * kernel * (1 if kind == "depthwise" else channels) * filters
        yield kind, weights, filters, height * width
        channels = filters
    features = channels if v["global_pooling"] else height * width * channels
    for units in ([v["dense_units"]] if v["dense_units"] > 0 else []) + [v["classes"]]:
        yield "dense", features * units, units, 1
        features = units


def count_params(values: dict) -> int:
    """Parameters of `build_cnn(values)`, computed without building it.

    Lets the tuner skip over-budget trials before paying for a graph.
    """
    bn = values["batch_norm"]
    # A conv with batch norm has no bias but 4 values per channel (gamma, beta, moving mean and variance).
    return sum(w + (4 * units if bn and kind != "dense" else units) for kind, w, units, _ in _weight_layers(values))


def count_macs(values: dict) -> int:
    """Multiply-accumulates of one inference of `build_cnn(values)`: each conv, depthwise and dense weight times
    the output pixels it is applied at (batch norm is folded into the convs; pooling, ReLU and softmax are not
    multiply-accumulates). What --max-macs checks and the report's latency estimate starts from."""
    return sum(w * positions for _, w, _, positions in _weight_layers(values))


def peak_activation_bytes(values: dict) -> int:
    """The most int8 activation bytes one op of `build_cnn(values)` reads and writes at once (its input and output
    maps): a lower bound on its TensorFlow Lite Micro arena, which adds the interpreter's own structures. What
    --max-arena-kb rules designs out by before converting them (`tuning.limits`)."""
    v = architecture(values)
    height, width, channels = input_shape(v)
    peak = 0
    for kind, _, _, stride, filters in layer_plan(v):
        before = height * width * channels
        if kind == "pool":
            height, width = height // 2, width // 2
        else:
            height, width = -(-height // stride), -(-width // stride)  # "same" padding
            channels = filters
        peak = max(peak, before + height * width * channels)
    return peak


# The flash form of the int8 file (`mnist_opt.export.flash.slim`), fitted by least squares of the relative
# error (benchmarks/size_fit.py) to models of the five built-in spaces converted with random weights, which
# give the trained model's size (`mnist_opt.export.file_size.flash_bytes`): one byte per weight, bytes per
# output channel (int32 bias, per-channel scale), per conv, dense and pooling op (tensors, shapes, options),
# and a fixed part. The fit and its error: docs/performance.md.
FLASH_FIXED_BYTES = 1067
FLASH_BYTES_PER_CHANNEL = 11
FLASH_BYTES_PER_CONV = 351
FLASH_BYTES_PER_DENSE = 173
FLASH_BYTES_PER_POOL = 165
# A LUT-compressed kernel (`clusters` given): its indices, a value table per channel, and what its DECODE op
# and tensors cost (fitted as above on clustered models, benchmarks/size_fit.py --clusters: 217 at 16 clusters, 271 at 4).
FLASH_BYTES_PER_DECODE = 250
MAX_INDEX_BITS = 7  # TFLite Micro's look-up tables index 1 to 7 bits: at most 128 values a channel


def index_bits(distinct: int) -> int:
    """The fewest index bits that address `distinct` values: ceil(log2(distinct)), at least 1."""
    return max(1, math.ceil(math.log2(max(distinct, 1))))


def lut_bytes(weights: int, channels: int, distinct: int) -> int:
    """A kernel's bytes as LUT indices and value tables (int8 values, one table per channel), its DECODE op left out."""
    return -(-weights * index_bits(distinct) // 8) + channels * distinct


def lut_pays(weights: int, channels: int, distinct: int) -> bool:
    """Whether a kernel is smaller LUT-compressed than as int8: what the export clusters and compresses."""
    return distinct <= 2 ** MAX_INDEX_BITS and lut_bytes(weights, channels, distinct) + FLASH_BYTES_PER_DECODE < weights


def estimate_flash_bytes(values: dict, clusters: int | None = None) -> int:
    """Size of the flash form of `build_cnn(values)`'s full-integer file, estimated without building it.

    With `clusters`, every conv and dense kernel that LUT compression makes smaller (`lut_pays`) is counted as
    clustered to that many values and compressed: the clustered variant's flash form (depthwise kernels are
    not clustered, as `export.cluster` leaves them). Batch norm is folded into the convs by the
    converter, so it adds no bytes.
    """
    pools = sum(kind == "pool" for kind, *_ in layer_plan(architecture(values)))
    total = FLASH_FIXED_BYTES + FLASH_BYTES_PER_POOL * pools
    for kind, w, units, _ in _weight_layers(values):
        stored = w
        if clusters is not None and kind != "depthwise" and lut_pays(w, units, clusters):  # tfmot clusters no depthwise
            stored = lut_bytes(w, units, clusters) + FLASH_BYTES_PER_DECODE
        total += stored + FLASH_BYTES_PER_CHANNEL * units + (FLASH_BYTES_PER_DENSE if kind == "dense" else FLASH_BYTES_PER_CONV)
    return total
