"""Running full-integer .tflite bytes in TensorFlow Lite Micro, the runtime of microcontrollers.

The `tflite-micro` package's interpreter is TFLite Micro's C++ built for the host, with its
reference kernels and every builtin op registered. `check` says whether a file runs there and the
smallest tensor arena it allocates in; `Runner` predicts with it, as `export.litert.Runner` does
with LiteRT (floats in, probabilities out).

The arena is measured with the host build, whose pointers are 8 bytes: a 32-bit board needs a
little less for the same model. Optimized kernels (CMSIS-NN) can ask for scratch buffers the
reference kernels do not: the generated header adds a margin (`export.csource.ARENA_MARGIN`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from tflite_micro import runtime as tflm

from mnist_opt.export import flatbuffer
from mnist_opt.export.litert import from_int8, to_int8
from mnist_opt.errors import MicroUnsupported, MnistOptError
from mnist_opt.runtime import captured_stderr

ALIGN = 16  # TFLite Micro aligns tensors in the arena to 16 bytes: sizes are searched in those steps
MAX_ARENA = 16 * 1024 * 1024  # past this a file is not for a microcontroller
_MISSING_OP = re.compile(r"Didn't find op for (?:builtin|custom) opcode '([^']+)'")
_TOO_SMALL = ("Failed to allocate", "Failed to resize buffer", "missing:")  # the arena's own complaints
MAX_CRASHES = 8  # children of `arena_bytes` that may crash before it gives up


def _interpreter(model: bytes, arena: int):
    """(a TFLite Micro interpreter with its tensors allocated in `arena` bytes, None), or (None, what it printed)."""
    with captured_stderr() as text:
        try:
            return tflm.Interpreter.from_bytes(model, arena_size=arena), None
        except RuntimeError:
            pass
    return None, text[0]


def arena_bytes(model: bytes) -> int:
    """The smallest arena, in steps of 16 bytes, in which TFLite Micro allocates the model's tensors.

    Raises MicroUnsupported if it allocates in none up to 16 MiB (missing ops: their names). The search runs in a
    child process (`python -m mnist_opt.export.micro arena`): TFLite Micro's host build can crash outright
    (a segmentation fault in its allocator) when given an arena far below what the model needs, instead of
    failing. A size a child crashed at counts as too small, and a new child searches on above it.
    """
    low = 0
    with tempfile.TemporaryDirectory(prefix="mnist-opt-arena-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        for _ in range(MAX_CRASHES):
            proc = subprocess.run([sys.executable, "-m", "mnist_opt.export.micro", "arena", str(path), str(low)],
                                  capture_output=True, text=True)
            lines = proc.stdout.splitlines()
            if proc.returncode == 0 and lines and lines[-1].startswith("{"):
                result = json.loads(lines[-1])
                if "arena" in result:
                    return result["arena"]
                raise MicroUnsupported(result["error"], result["ops"])
            probes = [int(line.split()[1]) for line in lines if line.startswith("probe ")]
            if proc.returncode >= 0 or not probes:  # not a crash at a probe: a bug to show, not to retry
                raise MnistOptError(f"measuring the TFLite Micro arena failed: {(proc.stderr or proc.stdout)[-1500:]}")
            low = max(low, probes[-1])
    raise MnistOptError(f"TFLite Micro's host interpreter crashed {MAX_CRASHES} times measuring the arena")


def _search_arena(model: bytes, low: int = 0) -> int:
    """`arena_bytes`' search, in this process: doubling up from 4x the file, then halving down to `low` (too small)."""
    high = max(low + ALIGN, ALIGN, 4 * len(model) // ALIGN * ALIGN)
    while True:
        print(f"probe {high}", flush=True)
        interpreter, error = _interpreter(model, high)
        if interpreter is not None:
            break
        missing = sorted(set(_MISSING_OP.findall(error)))
        if missing:
            raise MicroUnsupported(f"TFLite Micro has no kernel for {', '.join(missing)}", missing)
        lines = [line.strip() for line in error.splitlines() if line.strip()]
        if not any(mark in error for mark in _TOO_SMALL):  # an op that cannot prepare, say: no arena helps
            raise MicroUnsupported(f"TFLite Micro cannot run the model: {'; '.join(lines[-3:]) or 'no message'}", [])
        if high >= MAX_ARENA:
            raise MicroUnsupported(f"TFLite Micro cannot allocate the model in {MAX_ARENA:,} bytes: "
                                   f"{'; '.join(lines[-3:])}", [])
        low, high = high, min(2 * high, MAX_ARENA)
    while high - low > ALIGN:  # invariant: `low` fails (or is 0), `high` allocates
        mid = (low + high) // 2 // ALIGN * ALIGN
        print(f"probe {mid}", flush=True)
        if _interpreter(model, mid)[0] is not None:
            high = mid
        else:
            low = mid
    return high


def check(model: bytes) -> dict:
    """Whether TFLite Micro runs the file: its ops, and the arena it needs or why it cannot run it."""
    ops = flatbuffer.ops(model)
    try:
        return {"runs": True, "ops": ops, "arena_bytes": arena_bytes(model), "unsupported_ops": [], "error": None}
    except MicroUnsupported as exc:
        return {"runs": False, "ops": ops, "arena_bytes": None, "unsupported_ops": exc.ops, "error": str(exc)}


class Runner:
    """TFLite Micro over one full-integer model, batch 1: floats in, probabilities out."""

    def __init__(self, model: bytes, arena: int | None = None):
        arena = arena or arena_bytes(model)
        self.interpreter, error = _interpreter(model, arena)
        if self.interpreter is None:
            raise MicroUnsupported(f"TFLite Micro cannot allocate the model in {arena:,} bytes: {error.strip()}", [])
        self.input = self.interpreter.get_input_details(0)
        self.output = self.interpreter.get_output_details(0)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for float images (N, H, W, C) in [0, 1], one invocation each."""
        (in_scale,), (in_zero,) = (self.input["quantization_parameters"][k] for k in ("scales", "zero_points"))
        (out_scale,), (out_zero,) = (self.output["quantization_parameters"][k] for k in ("scales", "zero_points"))
        x = to_int8(images, in_scale, in_zero)
        out = np.empty((len(images), int(self.output["shape"][-1])), np.float32)
        for i, image in enumerate(x):
            self.interpreter.set_input(image[np.newaxis], 0)
            self.interpreter.invoke()
            out[i] = from_int8(self.interpreter.get_output(0)[0], out_scale, out_zero)
        return out


def predict(model: bytes, images: np.ndarray, arena: int | None = None, workers: int | None = None) -> np.ndarray:
    """Probabilities for float images, split over `workers` processes (default: one per core).

    TFLite Micro's reference kernels are plain loops, milliseconds an image (docs/microcontrollers.md),
    and its Python binding holds the GIL: processes, not threads, use the second core. They are
    fresh interpreters (`python -m mnist_opt.export.micro`), not forks of a process that has TensorFlow loaded.
    """
    arena = arena or arena_bytes(model)
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(images) // 500))
    if workers == 1:
        return Runner(model, arena)(images)
    with tempfile.TemporaryDirectory(prefix="mnist-opt-micro-") as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(model)
        for k, chunk in enumerate(np.array_split(images, workers)):
            np.save(work / f"images_{k}.npy", chunk)
        procs = [subprocess.Popen([sys.executable, "-m", "mnist_opt.export.micro", str(work), str(k), str(arena)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for k in range(workers)]
        errors = [p.communicate()[1].decode(errors="replace") for p in procs]
        if any(p.returncode for p in procs):
            raise MnistOptError(f"a TFLite Micro worker failed: {next(e for e, p in zip(errors, procs) if p.returncode)[-1500:]}")
        return np.concatenate([np.load(work / f"probabilities_{k}.npy") for k in range(workers)])


if __name__ == "__main__" and sys.argv[1] == "arena":  # `arena_bytes`' child: ... arena FILE LOW
    try:
        print(json.dumps({"arena": _search_arena(Path(sys.argv[2]).read_bytes(), int(sys.argv[3]))}))
    except MicroUnsupported as exc:
        print(json.dumps({"error": str(exc), "ops": exc.ops}))
elif __name__ == "__main__":  # one worker of `predict`: python -m mnist_opt.export.micro DIR K ARENA
    work, k, arena = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    np.save(work / f"probabilities_{k}.npy", Runner((work / "model.tflite").read_bytes(), arena)(np.load(work / f"images_{k}.npy")))
