"""Reading a .tflite file's ops and kernels: figures checked against weights set by hand."""

import numpy as np
import tf_keras

from mnist_opt.export import flatbuffer, tflite


def test_kernels_report_the_zeros_and_values_that_were_put_there():
    model = tf_keras.Sequential([tf_keras.Input((28, 28, 1)), tf_keras.layers.Conv2D(8, 3, name="conv"),
                                 tf_keras.layers.Flatten(), tf_keras.layers.Dense(10, name="head")])
    conv, bias = model.get_layer("conv").get_weights()
    rng = np.random.default_rng(0)
    conv = rng.choice([-0.5, 0.25, 0.5], size=conv.shape).astype("float32")  # three values per channel
    head, head_bias = model.get_layer("head").get_weights()
    head = rng.normal(size=head.shape).astype("float32")
    head[: head.shape[0] // 4] = 0.0  # a quarter of the rows
    model.get_layer("conv").set_weights([conv, bias])
    model.get_layer("head").set_weights([head, head_bias])
    data = tflite.convert(model, "int8", rng.random((20, 28, 28, 1), dtype=np.float32))

    assert flatbuffer.ops(data) == ["CONV_2D", "FULLY_CONNECTED", "RESHAPE"]
    kernels = flatbuffer.kernels(data, min_weights=50)
    assert set(kernels) == {"conv", "head"}
    assert kernels["conv"] == {"weights": 72, "zeros": 0.0, "distinct": 3}
    assert kernels["head"]["weights"] == head.size and abs(kernels["head"]["zeros"] - 0.25) < 0.01
    assert kernels["head"]["distinct"] > 100
    assert set(flatbuffer.kernels(data, min_weights=100)) == {"head"}  # the conv's 72 are below the cut
    assert abs(flatbuffer.sparsity(kernels) - 0.25 * head.size / (head.size + 72)) < 0.01
