import numpy as np
import pytest

from mnist_opt.export import litert, tflite
from mnist_opt.tuning import inputs


@pytest.fixture(scope="module")
def converted(small_legacy_model):
    model, values, x, y, x_val, y_val = small_legacy_model
    representative = inputs.to_inputs(x[:200]).numpy()
    return {q: tflite.convert(model, q, representative) for q in tflite.QUANTIZATIONS}


def test_each_quantization_agrees_with_its_keras_source(seed, small_legacy_model, converted):
    model, _, _, _, x_val, y_val = small_legacy_model
    images = inputs.to_inputs(x_val).numpy()
    reference = model.predict(images, verbose=0).argmax(1)
    for quantization, model_bytes in converted.items():
        probs = litert.predict(model_bytes, images, batch_size=128)
        assert probs.shape == (len(images), 10)
        assert (probs.argmax(1) == reference).mean() >= 0.98, quantization


def test_int8_takes_and_returns_int8_and_is_smallest(seed, converted):
    run = litert.Runner(converted["int8"])
    assert run.input_dtype == np.int8 and np.dtype(run.output["dtype"]) == np.int8
    assert run.input["quantization"][0] > 0
    assert len(converted["int8"]) < len(converted["float16"]) < len(converted["none"])
    assert litert.Runner(converted["none"]).input_dtype == np.float32


def test_int8_without_input_scaling_collapses(seed, small_legacy_model, converted):
    """Why Runner quantizes inputs: raw [0, 1] floats cast to int8 lose the digit."""
    model, _, _, _, x_val, _ = small_legacy_model
    images = inputs.to_inputs(x_val[:200]).numpy()
    run = litert.Runner(converted["int8"])
    run._resize(len(images))
    run.interpreter.set_tensor(run.input["index"], images.astype(np.int8))
    run.interpreter.invoke()
    naive = run.interpreter.get_tensor(run.output["index"]).argmax(1)
    proper = run(images).argmax(1)
    reference = model.predict(images, verbose=0).argmax(1)
    assert (proper == reference).mean() > (naive == reference).mean() + 0.3


def test_unknown_quantization_is_refused(seed, small_legacy_model):
    with pytest.raises(ValueError, match="quantization"):
        tflite.convert(small_legacy_model[0], "int4")
