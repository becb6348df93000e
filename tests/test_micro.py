"""TFLite Micro on the host: the arena it needs, files it cannot run, predictions against LiteRT."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import AGREEMENT_IMAGES
from mnist_opt.data import load_test
from mnist_opt.export import litert, micro
from mnist_opt.export.config import VARIANTS
from mnist_opt.inference.model import to_inputs


@pytest.fixture(scope="module")
def topk_file():
    """A .tflite file with an op TFLite Micro has no kernel for (TOPK_V2)."""
    import tensorflow as tf

    serve = tf.function(lambda x: tf.math.top_k(tf.reshape(x, (1, -1)), 3).values)
    concrete = serve.get_concrete_function(tf.TensorSpec((1, 28, 28, 1), tf.float32))
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()


def test_the_measured_arena_allocates_and_ten_percent_less_does_not(smoke_export):
    model = (smoke_export[0] / "export" / "int8.tflite").read_bytes()
    arena = micro.arena_bytes(model)
    assert arena % micro.ALIGN == 0
    assert micro._interpreter(model, arena)[0] is not None
    assert micro._interpreter(model, arena - micro.ALIGN)[0] is None  # the smallest, in 16-byte steps
    assert micro._interpreter(model, int(arena * 0.9))[0] is None


def test_a_file_with_an_op_tflite_micro_lacks_is_reported_with_the_op_name(topk_file):
    check = micro.check(topk_file)
    assert check["runs"] is False and check["unsupported_ops"] == ["TOPK_V2"]
    assert "TOPK_V2" in check["error"] and check["arena_bytes"] is None
    assert check["ops"] == ["RESHAPE", "TOPK_V2"]
    with pytest.raises(micro.MicroUnsupported, match="TOPK_V2"):
        micro.Runner(topk_file)


def test_the_export_writes_no_source_for_a_file_tflite_micro_cannot_run(topk_file, tmp_path):
    from mnist_opt.export.export import micro_files

    entry = {"file": "topk.tflite", "sha256": "0" * 64, "input": {}, "output": {}}
    (tmp_path / "micro").mkdir()
    figures = micro_files("topk", topk_file, entry, tmp_path, min_weights=1000, images=np.zeros((2, 28, 28, 1), "float32"),
                          names=[str(i) for i in range(10)])
    assert figures["micro"]["runs"] is False and figures["micro"]["unsupported_ops"] == ["TOPK_V2"]
    assert list((tmp_path / "micro").iterdir()) == []


def test_tflite_micro_predicts_what_litert_does_for_every_int8_variant(smoke_export):
    """Each full-integer file on 1,000 test images: TFLite Micro against LiteRT's own kernels.

    LiteRT's default XNNPACK delegate requantizes in float32, TFLite Micro and LiteRT's kernels in
    fixed point: against XNNPACK the answers differ on near-ties (the report gives both figures).
    The report measures all 10,000 (tests/test_report.py checks its agreement figures).
    """
    x = to_inputs(load_test(None)[0][:AGREEMENT_IMAGES])
    names = [n for n in VARIANTS if n.endswith("int8")]
    for name in names:
        model = (smoke_export[0] / "export" / f"{name}.tflite").read_bytes()
        tflm = micro.predict(model, x).argmax(1)
        agree = (tflm == litert.predict(model, x, xnnpack=False).argmax(1)).mean()
        assert agree >= 0.999, (name, agree)


def test_the_workers_split_changes_nothing(smoke_export):
    model = (smoke_export[0] / "export" / "pruned_int8.tflite").read_bytes()
    x = to_inputs(load_test(None)[0][:1000])  # the fewest images split over two workers (micro.predict)
    assert np.array_equal(micro.predict(model, x, workers=2), micro.predict(model, x, workers=1))


def test_the_export_recorded_the_arena_the_file_needs(smoke_export):
    manifest = json.loads((smoke_export[0] / "export" / "manifest.json").read_text())
    for v in manifest["variants"]:
        if "micro" in v:
            form = (smoke_export[0] / "export" / v["micro"]["file"]).read_bytes()  # the flash form, what ships
            assert v["micro"]["arena_bytes"] == micro.arena_bytes(form), v["name"]


def test_the_tflite_micro_worker_loads_no_tensorflow():
    """`micro.predict`'s worker processes start fresh: TensorFlow would cost each seconds and hundreds of MB."""
    code = ("import sys, mnist_opt.export.micro; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
