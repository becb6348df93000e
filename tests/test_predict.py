import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnist_opt.cli import app
from mnist_opt.errors import InputError
from mnist_opt.inference.model import Model
from mnist_opt.inference.predict import classify, load_gray, predict, preparation, preprocess
from mnist_opt.data import load_test

N = 20


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """The first test digits as 200x200 PNGs, light-on-dark and dark-on-light."""
    x, y = load_test()
    x = x[..., 0]  # N x 28 x 28: one grey channel
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
    got = [r["class"] for r in predict(model, [p for _, p in files])]
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
    assert probs == sorted(probs, reverse=True) and doc[0]["class"] == doc[0]["top"][0]["class"]
    assert [t["name"] for t in doc[0]["top"]] == [str(t["class"]) for t in doc[0]["top"]]  # MNIST's names: the digits


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
    with pytest.raises(InputError, match=re.escape(expected)):
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
        assert predict(model, [jpg])[0]["class"] == predict(model, [png])[0]["class"]
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


# Data other than MNIST: tiny untrained models, since what is checked is the input a model is given and the
# names its answers carry, not accuracy.

ANIMALS = ("cat", "dog", "cow")


def tiny_model(path, shape, classes):
    """An untrained Keras model taking `shape` (H, W, C) images into `classes`, saved at `path`."""
    import keras

    keras.utils.set_random_seed(1234)
    model = keras.Sequential([keras.Input(shape), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(classes, activation="softmax")])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def fake_run(run, shape=None, class_names=(), form="npz"):
    """A run directory whose config.json records data of `shape` and `class_names`; shape None: a run from
    before the data was recorded (MNIST)."""
    run.mkdir(parents=True, exist_ok=True)
    doc = {"tune": {"data": None if shape is None else "my-data.npz"}}
    if shape is not None:
        doc["data"] = {"source": "my-data.npz", "form": form, "shape": list(shape), "classes": len(class_names),
                       "class_names": list(class_names), "content_sha256": "0" * 64, "test": "given",
                       "images": {"train": 100, "test": 20}, "skipped_images": 0}
    (run / "config.json").write_text(json.dumps(doc))
    return run


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model files by (H, W, C, classes), built once; tests copy them into their own runs."""
    folder = tmp_path_factory.mktemp("models")
    made = {}

    def get(h, w, c, k, into):
        if (h, w, c, k) not in made:
            made[h, w, c, k] = tiny_model(folder / f"{h}x{w}x{c}-{k}.keras", (h, w, c), k)
        into.parent.mkdir(parents=True, exist_ok=True)
        return Model(shutil.copy(made[h, w, c, k], into))
    return get


def colour_image(path, size=(40, 30)):
    """A red-to-blue gradient, left half opaque, right half transparent, `size` (width, height)."""
    w, h = size
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0] = np.linspace(255, 0, w, dtype=np.uint8)
    rgba[..., 2] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    rgba[..., 3] = 255
    rgba[:, w // 2:, 3] = 0
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def test_rgb_data_is_resized_in_colour_and_answers_carry_the_class_names(seed, models, tmp_path):
    run = fake_run(tmp_path / "run", (16, 16, 3), ANIMALS)
    model = models(16, 16, 3, 3, run / "best.keras")
    path = colour_image(tmp_path / "photo.png")
    prepare = preparation(model)
    assert (prepare.shape, prepare.class_names, prepare.digits, prepare.drawing) == ((16, 16, 3), ANIMALS, False, False)

    result = classify(model, path, "photo.png", top=3)
    seen = result["input"]
    on_white = Image.alpha_composite(Image.new("RGBA", (40, 30), "white"), Image.open(path)).convert("RGB")
    assert np.array_equal(seen, np.asarray(on_white.resize((16, 16), Image.BILINEAR)))  # no flip, no centering
    assert seen.shape == (16, 16, 3) and seen[8, 0, 0] > 200 and seen[8, 0, 1] < 50  # red stays red: colour kept
    assert (seen[:, -2:] == 255).all()  # the transparent half, composited on white

    probabilities = model.probabilities(seen[np.newaxis])[0]
    assert [t["name"] for t in result["top"]] == [ANIMALS[k] for k in np.argsort(-probabilities)]
    assert result["name"] == ANIMALS[result["class"]] and result["class"] == int(probabilities.argmax())
    assert result["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)
    batch = predict(model, [path], top=3)[0]["top"]
    assert [t["name"] for t in batch] == [t["name"] for t in result["top"]]
    assert [t["probability"] for t in batch] == pytest.approx([t["probability"] for t in result["top"]], abs=1e-6)


def test_grey_data_is_resized_without_the_digit_normalization(seed, models, tmp_path):
    run = fake_run(tmp_path / "run", (16, 16, 1), ("ring", "cross"))
    model = models(16, 16, 1, 2, run / "export" / "float32.keras")  # in the run's export folder: still its run
    grey = np.full((64, 64), 255, np.uint8)
    grey[:16, :16] = 0  # a dark square in a corner of a light image
    Image.fromarray(grey).save(tmp_path / "corner.png")
    prepare = preparation(model)
    assert not prepare.digits and prepare.drawing
    seen = prepare(tmp_path / "corner.png")
    assert np.array_equal(seen[..., 0], np.asarray(Image.fromarray(grey).resize((16, 16), Image.BILINEAR)))
    assert seen[0, 0, 0] < 50 and seen[-1, -1, 0] == 255  # not flipped to light-on-dark, not moved to the centre
    assert predict(model, [tmp_path / "corner.png"])[0]["name"] in ("ring", "cross")


@pytest.mark.parametrize("where", ["outside a run", "old run", "mnist run"])
def test_mnist_models_keep_the_digit_preprocessing(seed, models, digit_files, tmp_path, where):
    files, _, _ = digit_files
    folder = {"outside a run": lambda: tmp_path / "loose",
              "old run": lambda: fake_run(tmp_path / "old"),
              "mnist run": lambda: fake_run(tmp_path / "new", (28, 28, 1), [str(d) for d in range(10)], "mnist")}[where]()
    model = models(28, 28, 1, 10, folder / "export" / "int8.keras")
    prepare = preparation(model)
    assert prepare.digits and prepare.class_names == tuple(str(d) for d in range(10))
    _, path = files[1]  # dark on light: the digit normalization flips and centres it
    assert np.array_equal(prepare(path), preprocess(load_gray(path)))
    result = predict(model, [path])[0]
    assert result["name"] == str(result["class"])


def test_other_data_of_mnist_shape_is_not_taken_for_digits(seed, models, digit_files, tmp_path):
    files, _, _ = digit_files
    names = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    run = fake_run(tmp_path / "run", (28, 28, 1), names, "idx")
    model = models(28, 28, 1, 10, run / "best.keras")
    prepare = preparation(model)
    _, path = files[1]
    assert not prepare.digits and prepare.class_names == names
    assert np.array_equal(prepare(path)[..., 0], np.asarray(Image.open(path).resize((28, 28), Image.BILINEAR)))
    assert predict(model, [path])[0]["name"] in names


def test_a_model_outside_any_run_names_its_classes_by_number(seed, models, tmp_path):
    model = models(16, 16, 3, 3, tmp_path / "loose" / "model.keras")
    result = predict(model, [colour_image(tmp_path / "photo.png")], top=3)[0]
    assert not preparation(model).digits
    assert sorted(t["name"] for t in result["top"]) == ["0", "1", "2"] and result["name"] == str(result["class"])


def test_cli_prints_class_names(seed, models, tmp_path):
    run = fake_run(tmp_path / "run", (16, 16, 3), ANIMALS)
    model = models(16, 16, 3, 3, run / "best.keras")
    path = colour_image(tmp_path / "photo.png")
    plain = CliRunner().invoke(app, ["predict", str(model.path), str(path), "--top", "2"])
    as_json = CliRunner().invoke(app, ["predict", str(model.path), str(path), "--top", "2", "--json"])
    assert plain.exit_code == 0 and as_json.exit_code == 0, plain.output + as_json.output
    top = json.loads(as_json.output)[0]["top"]
    assert {t["name"] for t in top} < set(ANIMALS)
    assert plain.output.strip() == f"{path}: " + ", ".join(f"{t['name']} ({100 * t['probability']:.1f}%)" for t in top)


@pytest.mark.parametrize("h, w, c, k, takes", [(16, 16, 1, 3, "16x16x1 images in 3 classes"),
                                               (16, 16, 3, 2, "16x16x3 images in 2 classes"),
                                               (28, 28, 1, 10, "28x28x1 images in 10 classes")])
def test_a_model_that_disagrees_with_its_run_is_refused(seed, models, tmp_path, h, w, c, k, takes):
    run = fake_run(tmp_path / "run", (16, 16, 3), ANIMALS)
    model = models(h, w, c, k, run / "export" / "stray.keras")
    path = colour_image(tmp_path / "photo.png")
    expected = f"takes {takes}, but its run {run} recorded 16x16x3 images in 3 classes"
    with pytest.raises(InputError, match=re.escape(expected)):
        predict(model, [path])
    result = CliRunner().invoke(app, ["predict", str(model.path), str(path)])
    assert result.exit_code == 2 and expected in result.output and "move this one out" in result.output
