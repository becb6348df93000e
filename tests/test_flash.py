"""The flash form: TFLite Micro gives the int8 file's outputs, every buffer is aligned, LUT indices are as
narrow as the values allow, and a kernel with too many values is left as it is."""

import numpy as np
import pytest
import tf_keras

from conftest import AGREEMENT_IMAGES
from mnist_opt.export import flash, flatbuffer, micro
from mnist_opt.export.tflite import convert
from mnist_opt.tuning.architecture import build_cnn
from mnist_opt.tuning import size
from mnist_opt.tuning.size import MAX_INDEX_BITS
from mnist_opt.tuning.space import load

CLUSTERS = (4, 16)


def _values() -> dict:
    """A starting point of the frontier space: three single-conv blocks of 12, 16 and 24 filters."""
    return _start(1)


def _start(k: int) -> dict:
    start = dict(load("frontier").starts[k])
    return start | {k: v for k, v in load("frontier").corner("low").items() if k not in start and k != "filters"}


def _int8(clusters: int | None, values: dict | None = None) -> bytes:
    """The full-integer file of `values` (default `_values()`) with random weights; with `clusters`, every kernel
    of at least 64 values holds that many distinct floats (as weight clustering leaves it)."""
    rng = np.random.default_rng(0)
    model = build_cnn(values or _values(), tf_keras)
    weights = []
    for w in model.get_weights():  # kernels about zero; the rest positive (batch norm's moving variance among them)
        w = rng.uniform(-1, 1, w.shape).astype(w.dtype) if w.ndim in (2, 4) else rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
        if clusters and w.ndim in (2, 4) and w.size >= 64:
            w = rng.uniform(-1, 1, clusters).astype(w.dtype)[rng.integers(0, clusters, w.shape)]
        weights.append(w)
    model.set_weights(weights)
    return convert(model, "int8", rng.random((20, 28, 28, 1), dtype="float32"))


@pytest.fixture(scope="module")
def files():
    return {c: _int8(c) for c in (None, *CLUSTERS)}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).random((AGREEMENT_IMAGES, 28, 28, 1), dtype="float32")


@pytest.mark.parametrize("clusters", [None, *CLUSTERS])
def test_every_flash_form_gives_the_int8_files_outputs_in_tflite_micro(files, images, clusters):
    model = files[clusters]
    forms = flash.forms(model)
    assert set(forms) == ({"flash"} if clusters is None else {"flash", "uncompressed"})
    reference = micro.predict(model, images)
    for form, data in forms.items():
        assert np.array_equal(micro.predict(data, images), reference), form
        assert len(data) < len(model), form


@pytest.mark.parametrize("clusters", [None, *CLUSTERS])
def test_every_buffer_of_the_flash_form_is_16_byte_aligned(files, clusters):
    for data in flash.forms(files[clusters]).values():
        offsets = flash.buffer_offsets(data)
        assert offsets and all(o % flash.ALIGN == 0 for o in offsets), offsets


def test_the_offsets_are_read_from_the_file(files):
    """A file shifted by 4 bytes inside a larger buffer has the same offsets; its data moves with it."""
    data = flash.slim(files[None])
    offsets = flash.buffer_offsets(data)
    root = flatbuffer.workarounds.tflite_schema().fb.Model.GetRootAs(data, 0)
    first = next(root.Buffers(k) for k in range(root.BuffersLength()) if root.Buffers(k).DataLength())
    assert bytes(data[offsets[0]:offsets[0] + first.DataLength()]) == first.DataAsNumpy().tobytes()


def test_the_slim_form_keeps_no_names_metadata_or_repeated_zero_points(files):
    m = flatbuffer.workarounds.tflite_schema().to_object(bytearray(flash.slim(files[None])))
    assert not m.metadata and not m.signatureDefs and m.description is None
    tensors = m.subgraphs[0].tensors
    assert all(t.name is None for t in tensors)
    assert all(len(t.quantization.zeroPoint) == 1 for t in tensors if t.quantization is not None
               and t.quantization.zeroPoint is not None)
    assert all(t.quantization.min is None and t.quantization.max is None for t in tensors if t.quantization is not None)


@pytest.mark.parametrize("clusters", CLUSTERS)
def test_lut_index_bits_are_ceil_log2_of_each_kernels_distinct_values(files, clusters):
    model = files[clusters]
    kernels = {k: v for k, v in flatbuffer.kernels(model, 64).items()}
    plan = flash.lut_plan(model)
    assert plan and all(p["distinct"] <= clusters for p in plan)
    for p in plan:
        assert p["bits"] == int(np.ceil(np.log2(p["distinct"]))) or (p["distinct"] == 1 and p["bits"] == 1)
        assert kernels[flatbuffer.layer_name(p["name"])]["distinct"] == p["distinct"]
    # Each kernel's bytes become bits/8 of a byte a weight, value tables and a DECODE op (the estimate's
    # model of them, give or take the op's tensors and alignment).
    small, lean = flash.compressed(model), flash.slim(model)
    expected = sum(p["weights"] - size.lut_bytes(p["weights"], 0, p["distinct"]) for p in plan)
    tables = sum(p["distinct"] * c for p in plan for c in [_channels(model, p["tensor"])])
    assert abs(len(lean) - len(small) - (expected - tables - size.FLASH_BYTES_PER_DECODE * len(plan))) <= 128 * len(plan)
    assert "TFLM_DECODE" in flatbuffer.ops(small) and "TFLM_DECODE" not in flatbuffer.ops(lean)


def _channels(model: bytes, tensor: int) -> int:
    t = flatbuffer.workarounds.tflite_schema().to_object(bytearray(model)).subgraphs[0].tensors[tensor]
    return int(t.shape[t.quantization.quantizedDimension])


def test_index_bits():
    assert [flash.index_bits(n) for n in (1, 2, 3, 4, 5, 16, 17, 128)] == [1, 1, 2, 2, 3, 4, 5, 7]


def test_a_kernel_with_more_values_than_7_bit_indices_address_is_not_compressed():
    """Random weights on 32 and 48 filters: the large kernels have more than 128 int8 values a channel (of
    288 or 432 weights); the 9-weight channels of the first conv have at most 9, but their tables would
    cost more than they save."""
    model = _int8(None, _start(3))
    assert max(k["distinct"] for k in flatbuffer.kernels(model, 64).values()) > 2 ** MAX_INDEX_BITS
    assert flash.lut_plan(model) == [] and flash.compressed(model) is None
    assert "TFLM_DECODE" not in flatbuffer.ops(flash.forms(model)["flash"])
