import numpy as np

from mnist_opt import runtime


def _fit_once():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    model.fit(np.zeros((8, 4), "float32"), np.eye(2, dtype="float32")[[0, 1] * 4], epochs=1, verbose=0)


def test_training_registers_custom_gradients_that_the_block_releases(seed):
    """The leak is real (Keras' optimizer registers a gradient per traced step) and the block undoes it."""
    before = runtime.custom_gradients()
    _fit_once()
    leaked = runtime.custom_gradients() - before
    assert leaked  # if Keras stops doing this, the workaround can go

    before = runtime.custom_gradients()
    with runtime.released_custom_gradients():
        _fit_once()
        assert runtime.custom_gradients() - before  # registered while training...
    assert runtime.custom_gradients() == before  # ...and gone after


def test_rss_is_this_process_resident_memory():
    from pathlib import Path

    kib = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmRSS:")).split()[1])
    assert abs(runtime.rss_mib() - kib / 1024) < 64
