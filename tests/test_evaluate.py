import json

import numpy as np
from typer.testing import CliRunner

from mnist_opt.cli import app
from mnist_opt.reports.evaluate import evaluate, scores


def test_scores():
    labels = np.array([0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0])
    s = scores(labels, predicted, 10)
    assert s["accuracy"] == 0.6
    assert s["per_class_accuracy"] == [0.5, 1.0, 0.0] + [None] * 7  # digits 3-9 have no images
    assert s["confusion"][0][:3] == [1, 1, 0] and s["confusion"][2][0] == 1


def test_keras_and_tflite_files_evaluate_alike(seed, smoke_export):
    run_dir, _ = smoke_export
    keras_result = evaluate(run_dir / "best.keras")
    tflite_result = evaluate(run_dir / "export" / "float32.tflite")
    assert keras_result["images"] == tflite_result["images"] == 10000
    assert abs(keras_result["accuracy"] - tflite_result["accuracy"]) <= 0.002


def test_cli_json(seed, smoke_export):
    run_dir, _ = smoke_export
    result = CliRunner().invoke(app, ["evaluate", str(run_dir / "export" / "int8.tflite"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["kind"] == "tflite" and len(doc["confusion"]) == 10
