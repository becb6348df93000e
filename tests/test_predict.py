import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnist_opt.cli import app
from mnist_opt.errors import InputError
from mnist_opt.inference.model import Model
from mnist_opt.inference.predict import load_gray, predict, preprocess
from mnist_opt.data import load_test

N = 20


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """The first test digits as 200x200 PNGs, light-on-dark and dark-on-light."""
    x, y = load_test()
    folder = tmp_path_factory.mktemp("digits")
    files = []
    for i in range(N):
        big = Image.fromarray(x[i]).resize((200, 200), Image.BICUBIC)
        for polarity, img in (("light", big), ("dark", Image.fromarray(255 - np.asarray(big)))):
            path = folder / f"{i}_{polarity}.png"
            img.save(path)
            files.append((i, path))
    return files, x[:N], y[:N]


def test_preprocess_gives_mnist_form(seed, digit_files):
    files, x, _ = digit_files
    for i, path in files:
        out = preprocess(load_gray(path))
        assert out.shape == (28, 28) and out.dtype == np.uint8
        rows, cols = np.nonzero(out > 50)
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) <= 21  # inside MNIST's 20x20 box
        total = out.astype(float).sum()
        com = ((out.sum(1) * np.arange(28)).sum() / total, (out.sum(0) * np.arange(28)).sum() / total)
        assert abs(com[0] - 14) <= 0.6 and abs(com[1] - 14) <= 0.6
        # Close to the original MNIST image it was cut from, up to MNIST's own 1-pixel rounding.
        corr = max(np.corrcoef(np.roll(out, (dy, dx), (0, 1)).ravel().astype(float),
                               x[i].ravel().astype(float))[0, 1] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        assert corr > 0.9


def test_predict_matches_evaluate_on_mnist_digits(seed, smoke_export, digit_files):
    run_dir, _ = smoke_export
    files, x, _ = digit_files
    model = Model(run_dir / "export" / "int8.tflite")
    probs = model.probabilities(x)  # what evaluate sees for these images
    direct = probs.argmax(1)
    got = [r["digit"] for r in predict(model, [p for _, p in files])]
    want = [int(direct[i]) for i, _ in files]
    # The smoke model trained one epoch: where it is sure, the round trip through a PNG
    # must not change its answer; where it hesitates, a 1-pixel shift may.
    sure = [k for k, (i, _) in enumerate(files) if probs[i].max() >= 0.9]
    assert len(sure) >= len(files) // 2
    assert [got[k] for k in sure] == [want[k] for k in sure]
    assert np.mean(np.array(got) == np.array(want)) >= 0.9


def test_cli_top_and_json(seed, smoke_export, digit_files):
    run_dir, _ = smoke_export
    files, _, _ = digit_files
    result = CliRunner().invoke(app, ["predict", str(run_dir / "best.keras"), str(files[0][1]), "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert len(doc) == 1 and len(doc[0]["top"]) == 3
    probs = [t["probability"] for t in doc[0]["top"]]
    assert probs == sorted(probs, reverse=True) and doc[0]["digit"] == doc[0]["top"][0]["digit"]


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_text("not an image"), "not a readable image"),
    (lambda p: Image.new("L", (64, 64), 255).save(p, format="PNG"), "blank image"),
    (lambda p: Image.new("L", (64, 64), 0).save(p, format="PNG"), "blank image"),
    (lambda p: None, "no such file"),
])
def test_bad_images_exit_2(seed, smoke_run, tmp_path, make, expected):
    run_dir, _ = smoke_run
    path = tmp_path / "digit.png"
    make(path)
    with pytest.raises(InputError, match=expected):
        preprocess(load_gray(path))
    result = CliRunner().invoke(app, ["predict", str(run_dir / "best.keras"), str(path)])
    assert result.exit_code == 2 and expected in result.output


def _upright_and_as_stored(x: np.ndarray, tmp_path, i: int):
    """Digit i as a person sees it (PNG), and as a phone stores it: pixels turned, EXIF orientation 6."""
    upright = Image.fromarray(x[i]).resize((140, 140), Image.BICUBIC)
    upright.save(tmp_path / f"{i}.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).convert("RGB").save(tmp_path / f"{i}.jpg", quality=95, exif=exif)
    return tmp_path / f"{i}.png", tmp_path / f"{i}.jpg"


def test_exif_orientation_is_applied(seed, smoke_export, digit_files, tmp_path):
    run_dir, _ = smoke_export
    _, x, _ = digit_files
    model = Model(run_dir / "export" / "int8.tflite")
    for i in range(5):
        png, jpg = _upright_and_as_stored(x, tmp_path, i)
        seen, stored = preprocess(load_gray(png)), preprocess(load_gray(jpg))
        assert np.corrcoef(seen.ravel().astype(float), stored.ravel().astype(float))[0, 1] > 0.95
        assert predict(model, [jpg])[0]["digit"] == predict(model, [png])[0]["digit"]
    # Without the orientation the stored pixels are the digit turned on its side.
    turned = np.asarray(Image.open(jpg).convert("L").resize((28, 28)))
    assert np.corrcoef(turned.ravel().astype(float), x[4].ravel().astype(float))[0, 1] < 0.7


@pytest.mark.parametrize("stroke", [(255, 255, 255), (0, 0, 0), (200, 30, 30)], ids=["white", "black", "red"])
def test_a_drawing_on_a_transparent_canvas_takes_its_ink_from_alpha(seed, digit_files, tmp_path, stroke):
    _, x, _ = digit_files
    for i in range(5):
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., :3] = stroke
        rgba[..., 3] = x[i]  # opaque where the digit is, transparent elsewhere
        path = tmp_path / f"{i}.png"
        Image.fromarray(rgba, "RGBA").resize((140, 140), Image.BICUBIC).save(path)
        plain = tmp_path / f"{i}-plain.png"
        Image.fromarray(x[i]).resize((140, 140), Image.BICUBIC).save(plain)
        drawn, seen = preprocess(load_gray(path)), preprocess(load_gray(plain))
        assert np.corrcoef(drawn.ravel().astype(float), seen.ravel().astype(float))[0, 1] > 0.99


IMPORTS = """
import sys
from typer.testing import CliRunner
from mnist_opt.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "tf_keras", "keras_tuner"})
print("HEAVY", ",".join(heavy))
"""


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_inference_on_a_tflite_file_imports_no_tensorflow(seed, smoke_export, digit_files, command):
    import subprocess
    import sys

    run_dir, _ = smoke_export
    files, _, _ = digit_files
    args = [command, str(run_dir / "export" / "int8.tflite")] + ([str(files[0][1])] if command == "predict" else [])
    out = subprocess.run([sys.executable, "-c", IMPORTS, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HEAVY \n" in out.stdout  # none of them
    keras_file = subprocess.run([sys.executable, "-c", IMPORTS, command, str(run_dir / "best.keras"),
                                 *args[2:]], capture_output=True, text=True, timeout=120)
    assert keras_file.returncode == 0 and "keras" in keras_file.stdout.split("HEAVY")[1]  # .keras still works
