import signal
import weakref

import numpy as np
import pytest

from mnist_opt import runtime
from mnist_opt.errors import InputError


def _fit_once(callbacks=()):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    model.fit(np.zeros((8, 4), "float32"), np.eye(2, dtype="float32")[[0, 1] * 4], epochs=1, verbose=0,
              callbacks=list(callbacks))


def test_rss_is_this_process_resident_memory():
    from pathlib import Path

    kib = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmRSS:")).split()[1])
    assert abs(runtime.rss_mib() - kib / 1024) < 64


@pytest.fixture
def ctrl_c_handled():
    """Ctrl-C as in a terminal: a test run in a shell's background job starts with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_lost_in_a_garbage_collector_callback_still_stops_training(ctrl_c_handled, capsys):
    import keras

    class Node:
        pass

    with runtime.interruptible():
        node = Node()
        ref = weakref.ref(node, lambda _: signal.raise_signal(signal.SIGINT))  # Python ignores what this raises
        del node
        assert ref() is None and runtime.interrupted()  # lost on the way, but remembered
        with pytest.raises(KeyboardInterrupt):
            _fit_once([runtime.stop_on_interrupt(keras)])
    assert "KeyboardInterrupt" not in capsys.readouterr().err  # no "Exception ignored" traceback
    assert not runtime.interrupted() and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with runtime.interruptible():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_precision_can_be_forced_either_way(precision):
    precision("float32")
    assert runtime.training_dtype() is None
    precision(" BFloat16 ")
    assert runtime.training_dtype() == "mixed_bfloat16"


def test_auto_precision_follows_the_cpu(precision):
    precision("auto")
    with open("/proc/cpuinfo") as f:
        bf16 = bool({"avx512_bf16", "amx_bf16"} & set(next(l for l in f if l.startswith("flags")).split()))
    assert runtime.training_dtype() == ("mixed_bfloat16" if bf16 else None)


def test_unknown_precision_is_an_input_error(precision):
    precision("fp16")
    with pytest.raises(InputError, match=r"MNIST_OPT_PRECISION='fp16': expected one of auto, float32, bfloat16"):
        runtime.training_dtype()
