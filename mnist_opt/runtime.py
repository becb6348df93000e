"""Process-wide concerns: TensorFlow's start-up chatter, threads, memory, and Ctrl-C."""

from __future__ import annotations

import functools
import os
import signal
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager

from mnist_opt.errors import InputError


@contextmanager
def silenced_stderr():
    """Hide what C++ code writes to file descriptor 2; show it again if the block fails.

    TensorFlow, the TFLite converter and LiteRT print start-up and info lines
    ("Could not find cuda drivers", "Created TensorFlow Lite XNNPACK delegate")
    below Python, where no log level reaches.
    """
    text = []
    try:
        with captured_stderr() as text:
            yield
    except BaseException:
        sys.stderr.write("".join(text))  # fd 2 is back by now
        raise


@contextmanager
def captured_stderr():
    """Keep what C++ code writes to file descriptor 2 inside the block; yields a list that then holds it."""
    sys.stderr.flush()
    saved, text = os.dup(2), []
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text.append(captured.read().decode(errors="replace"))


def quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up messages hidden and its Python logs at ERROR."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with silenced_stderr():
        import tensorflow as tf
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", module="keras")
    warnings.filterwarnings("ignore", module="keras_tuner")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def set_threads(threads: int | None) -> None:
    """Limit TensorFlow to `threads` cores (a worker sharing a machine); None keeps its default."""
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1 if threads == 1 else 2)


PRECISIONS = {"auto": None, "float32": None, "bfloat16": "mixed_bfloat16"}


@functools.cache
def training_dtype() -> str | None:
    """The Keras dtype policy to train in: "mixed_bfloat16" or None (float32).

    $MNIST_OPT_PRECISION picks it: "auto" (the default) trains in bfloat16 where the CPU has bfloat16
    units (AVX-512 BF16, AMX) and in float32 elsewhere, where bfloat16 would be emulated; "float32" and
    "bfloat16" force one (bfloat16's speed and accuracy as measured: docs/performance.md). Weights stay
    float32 either way, and trained models are handed on and saved in float32.
    """
    choice = os.environ.get("MNIST_OPT_PRECISION", "auto").strip().lower() or "auto"
    if choice not in PRECISIONS:
        raise InputError(f"MNIST_OPT_PRECISION={choice!r}: expected one of {', '.join(PRECISIONS)}; "
                         "or unset it for auto (bfloat16 where the CPU has bfloat16 units, else float32)")
    if choice != "auto":
        return PRECISIONS[choice]
    return "mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & set(cpu_info().get("flags", "").split()) else None


def cpu_info() -> dict:
    """The first core's fields in /proc/cpuinfo ("model name", "flags", ...); {} where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in first.splitlines() if ":" in line)}


def rss_mib() -> float | None:
    """This process's resident memory in MiB (Linux; None elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None
    return round(int(line.split()[1]) / 1024, 1)


_interrupted = False


def interrupted() -> bool:
    """Whether Ctrl-C was pressed inside `interruptible()`, even if its KeyboardInterrupt got lost."""
    return _interrupted


def raise_if_interrupted() -> None:
    if _interrupted:
        raise KeyboardInterrupt


@contextmanager
def interruptible():
    """Make one Ctrl-C stop the block for sure.

    Python raises KeyboardInterrupt wherever the main thread happens to be,
    and when that is a callback run by the garbage collector (a weakref's, as
    TensorFlow uses) Python prints "Exception ignored" and carries on. So the
    handler also sets a flag, which the training loops check at each batch
    (`stop_on_interrupt`), and the lost exception's message is dropped. A
    process started with Ctrl-C ignored (nohup, a background job) stays so.
    """
    global _interrupted

    def handler(signum, frame):
        global _interrupted
        _interrupted = True
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None) or threading.current_thread() is not threading.main_thread():
        yield
        return

    def unraisable(info):  # the lost KeyboardInterrupt: the flag carries it, no traceback for it
        if not issubclass(info.exc_type, KeyboardInterrupt):
            previous_hook(info)

    previous_hook = sys.unraisablehook
    signal.signal(signal.SIGINT, handler)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        _interrupted = False


def stop_on_interrupt(k):
    """A callback for Keras module `k` (keras or tf_keras): raise KeyboardInterrupt at the next batch after Ctrl-C."""

    class StopOnInterrupt(k.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise_if_interrupted()

        def on_test_batch_end(self, batch, logs=None):
            raise_if_interrupted()

    return StopOnInterrupt()
