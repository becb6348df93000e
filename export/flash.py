"""The flash form of a full-integer .tflite file: what a microcontroller stores, and nothing more.

    slim(model)       strings and signatures stripped, metadata dropped, min/max removed, each
                      tensor's zero points reduced to one value where they are all equal (TFLite
                      Micro reads only the first), buffers re-packed with the schema's 16-byte alignment
    compressed(model) the same, with every int8 kernel whose channels hold at most 2^7 distinct
                      values stored as ceil(log2(distinct))-bit indices and a value table per channel
                      (TFLite Micro's look-up-table compression; DECODE ops expand them at run time)

The rewrites follow TFLite Micro's own tools (its compression tool, `tflite_flatbuffer_align`, the
strip and zero-point transforms of its model transforms). The files are for TFLite Micro: desktop
LiteRT may refuse them. Compression trades flash for RAM: DECODE writes the expanded kernels into
the arena. Why and what each step saves: docs/microcontrollers.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import flatbuffers
import numpy as np

from mnist_opt import workarounds
from mnist_opt.tuning.size import index_bits, lut_pays

ALIGN = 16  # bytes: the schema's force_align of Buffer.data, which TFLite Micro reads in place


def _schema():
    return workarounds.tflite_schema()


def _pack(model_object) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model_object.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def aligned(model: bytes) -> bytes:
    """The model re-packed by TFLite Micro's aligner: every buffer's data at a multiple of 16 bytes."""
    align = workarounds.tflm_compression().align
    with tempfile.TemporaryDirectory(prefix="mnist-opt-align-") as tmp:
        src, dst = Path(tmp) / "in.tflite", Path(tmp) / "out.tflite"
        src.write_bytes(model)
        align(str(src), str(dst))
        return dst.read_bytes()


def slim(model: bytes) -> bytes:
    """The model without what TFLite Micro does not read (module docstring), aligned."""
    m = _schema().to_object(bytearray(model))
    m.description, m.metadata, m.signatureDefs = None, None, None
    for subgraph in m.subgraphs:
        subgraph.name = None
        for tensor in subgraph.tensors:
            tensor.name = None
            q = tensor.quantization
            if q is None:
                continue
            q.min = q.max = None
            if q.zeroPoint is not None and len(q.zeroPoint) > 1 and len(set(np.asarray(q.zeroPoint).tolist())) == 1:
                q.zeroPoint = [int(q.zeroPoint[0])]
    _drop_unused_buffers(m)
    return aligned(_pack(m))


def _drop_unused_buffers(m) -> None:
    """Buffers no tensor reads (the metadata's, once it is dropped) go; buffer 0 stays the empty one."""
    used = sorted({t.buffer for s in m.subgraphs for t in s.tensors} - {0})
    new = {0: 0, **{old: k + 1 for k, old in enumerate(used)}}
    m.buffers = [m.buffers[0]] + [m.buffers[old] for old in used]
    for subgraph in m.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = new[tensor.buffer]


def lut_plan(model: bytes) -> list[dict]:
    """The kernels LUT compression applies to: int8 constant kernels whose channels (the quantized axis) hold
    at most 2^MAX_INDEX_BITS distinct values, each with the fewest index bits those values allow, where the
    indices, tables and DECODE op are smaller than the kernel (`tuning.size.lut_pays`)."""
    s = _schema()
    m = s.to_object(bytearray(model))
    consumed = {i for op in m.subgraphs[0].operators for i in (op.inputs if op.inputs is not None else [])}
    plan = []
    for index, t in enumerate(m.subgraphs[0].tensors):
        data = m.buffers[t.buffer].data
        if t.type != s.fb.TensorType.INT8 or data is None or len(t.shape) not in (2, 4) or index not in consumed:
            continue
        w = np.asarray(data, dtype=np.uint8).view(np.int8).reshape(t.shape)
        axis = t.quantization.quantizedDimension if t.quantization is not None else 0
        distinct = max(np.unique(c).size for c in np.moveaxis(w, axis, 0))
        if lut_pays(w.size, w.shape[axis], distinct):
            plan.append({"tensor": index, "axis": int(axis), "bits": index_bits(distinct), "distinct": int(distinct),
                         "weights": int(w.size), "name": (t.name or b"").decode()})
    return plan


def compressed(model: bytes, plan: list[dict] | None = None) -> bytes | None:
    """The slim form with the kernels of `plan` (default: `lut_plan(model)`) LUT-compressed; None if none apply."""
    plan = lut_plan(model) if plan is None else plan
    if not plan:
        return None
    tools = workarounds.tflm_compression()
    specs = [tools.lut(p["tensor"], p["bits"], p["axis"]) for p in plan]
    return slim(bytes(tools.compress(model, specs)))


def forms(model: bytes) -> dict[str, bytes]:
    """{'flash': the smallest flash form, 'uncompressed': the slim one, where LUT compression applies}.

    'flash' is what the C arrays hold; 'uncompressed' needs less RAM (no DECODE outputs in the arena).
    """
    lean = slim(model)
    small = compressed(model)
    return {"flash": lean} if small is None or len(small) >= len(lean) else {"flash": small, "uncompressed": lean}


def verified_forms(model: bytes, images: np.ndarray) -> tuple[dict[str, bytes], list[str]]:
    """`forms(model)`, each kept only if TFLite Micro gives the int8 file's outputs on `images`, and what was
    dropped. A compressed form that differs gives way to the uncompressed one; a slim form that differs, to
    the int8 file itself. A file TFLite Micro cannot run is not checked (the export reports it as such)."""
    from mnist_opt.export import micro

    try:
        reference = micro.predict(model, images, workers=1)
    except micro.MicroUnsupported:
        return forms(model), []

    def same(data: bytes) -> bool:
        try:
            return np.array_equal(micro.predict(data, images, workers=1), reference)
        except micro.MicroUnsupported:
            return False

    made, dropped = forms(model), []
    if "uncompressed" in made and not same(made["flash"]):
        dropped.append("the LUT-compressed form (its outputs differ from the int8 file's in TFLite Micro)")
        made = {"flash": made["uncompressed"]}
    elif "uncompressed" in made and not same(made["uncompressed"]):
        dropped.append("the uncompressed form (its outputs differ from the int8 file's in TFLite Micro)")
        made = {"flash": made["flash"]}
    if "uncompressed" not in made and made["flash"] is not model and not same(made["flash"]):
        dropped.append("the slim form (its outputs differ from the int8 file's in TFLite Micro): the int8 file as it is")
        made = {"flash": model}
    return made, dropped


def buffer_offsets(model: bytes) -> list[int]:
    """Where each non-empty buffer's data starts in the file (what the 16-byte alignment is about)."""
    root = _schema().fb.Model.GetRootAs(model, 0)
    start = np.frombuffer(model, np.uint8).ctypes.data
    data = (root.Buffers(k).DataAsNumpy() for k in range(root.BuffersLength()))
    return [d.ctypes.data - start for d in data if isinstance(d, np.ndarray) and d.size]
