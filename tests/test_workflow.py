"""Your own images through the same commands: a folder of RGB images tuned, exported as every variant, checked
in TFLite Micro and reported, with the data recorded in the run and a resume on other data refused."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnist_opt.cli import app
from mnist_opt.export.config import VARIANTS

CLASSES = ("blue", "green", "red")  # sorted, as the folder form numbers them
SIZE = (16, 20)  # height, width: not square, not 28


def colour_images(root, per_class: int, seed: int) -> None:
    """Noisy images tinted by their class, with a bar at a random place: learnable in an epoch or two."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 120, (*SIZE, 3)).astype(np.uint8)
            image[..., 2 - c] += 120  # blue, green, red: channels 2, 1, 0
            row = rng.integers(0, SIZE[0] - 4)
            image[row:row + 3] = 255
            Image.fromarray(image).save(root / name / f"{i}.png")


@pytest.fixture(scope="module")
def rgb_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rgb")
    colour_images(root / "train", 100, 0)
    colour_images(root / "test", 20, 1)
    return root


@pytest.fixture(scope="module")
def rgb_run(rgb_data, tmp_path_factory):
    """tune, export (all nine variants) and report on the RGB folder, through the CLI."""
    run_dir = tmp_path_factory.mktemp("rgb_run") / "run"
    runner = CliRunner()
    tune = runner.invoke(app, ["tune", "--space", "quick", "--tuner", "random", "--max-trials", "1", "--max-epochs", "1",
                               "--train-subset", "300", "--final-epochs", "3", "--data", str(rgb_data),
                               "--run-dir", str(run_dir)])
    assert tune.exit_code == 0, tune.output
    export = runner.invoke(app, ["export", str(run_dir), "--prune-epochs", "1", "--qat-epochs", "1",
                                 "--cluster-epochs", "1"])
    assert export.exit_code == 0, export.output
    from mnist_opt.tuning.train import train_baseline
    from mnist_opt import data

    train_baseline(run_dir, 1, 0, data.Source(str(rgb_data)))
    report = runner.invoke(app, ["report", str(run_dir), "--latency-runs", "5"])
    assert report.exit_code == 0, report.output
    return run_dir


@pytest.mark.slow
def test_an_rgb_folder_goes_through_every_stage_and_variant(rgb_run, rgb_data):
    config = json.loads((rgb_run / "config.json").read_text())
    assert config["data"]["form"] == "folder" and config["data"]["shape"] == [*SIZE, 3]
    assert config["data"]["class_names"] == list(CLASSES) and config["data"]["test"] == "given"
    assert config["data"]["source"] == str(rgb_data)
    best = json.loads((rgb_run / "best_hparams.json").read_text())["hyperparameters"]
    assert (best["image_height"], best["image_width"], best["channels"], best["classes"]) == (*SIZE, 3, 3)
    manifest = json.loads((rgb_run / "export" / "manifest.json").read_text())
    assert {v["name"] for v in manifest["variants"]} == set(VARIANTS)
    assert manifest["class_names"] == list(CLASSES)
    for v in manifest["variants"]:
        assert v["input"]["shape"] == [*SIZE, 3]
    header = (rgb_run / "export" / "micro" / "int8.h").read_text()
    assert "constexpr int kInputHeight = 16;" in header and "constexpr int kInputWidth = 20;" in header
    assert "constexpr int kInputChannels = 3;" in header and "constexpr int kNumClasses = 3;" in header
    assert 'kClassNames[kNumClasses] = {"blue", "green", "red"}' in header
    doc = json.loads((rgb_run / "report.json").read_text())
    assert doc["test_images"] == 60 and doc["data"]["classes"] == 3
    rows = {r["name"]: r for r in doc["rows"]}
    assert set(rows) == {"baseline", "tuned", *VARIANTS}
    for name, row in rows.items():
        assert len(row["confusion"]) == 3 and sum(map(sum, row["confusion"])) == 60
    assert rows["tuned"]["test_accuracy"] > 0.9  # the tint alone tells the classes apart
    for name in ("int8", "clustered_int8", "pruned_int8"):
        micro = rows[name]["micro"]
        assert micro["runs"] and micro["forms"]["flash"]["differ"] == 0, (name, micro)
    md = (rgb_run / "report.md").read_text()
    assert "3 classes" in md and "| 0 | blue |" in md


@pytest.mark.slow
def test_evaluate_finds_the_run_s_data_by_itself(rgb_run):
    result = CliRunner().invoke(app, ["evaluate", str(rgb_run / "export" / "int8.tflite"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["images"] == 60 and doc["class_names"] == list(CLASSES)
    mnist = CliRunner().invoke(app, ["evaluate", str(rgb_run / "export" / "int8.tflite"), "--data",
                                     str(__import__("mnist_opt.data", fromlist=["BUNDLED"]).BUNDLED)])
    assert mnist.exit_code == 2 and "takes 16x20x3 images in 3 classes" in mnist.output


def test_resuming_with_other_data_is_refused_naming_what_differs(rgb_data, tmp_path):
    from mnist_opt.errors import RunDirError
    from mnist_opt.tuning import tune
    from mnist_opt.tuning.config import TuneConfig

    cfg = TuneConfig(space="quick", data=str(rgb_data), run_dir=str(tmp_path / "run"))
    tune.start(cfg)  # the run directory and its config.json, as a search leaves them
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["search"]["data_shape"] == "16x20x3" and recorded["search"]["data_classes"] == 3
    with pytest.raises(RunDirError) as info:
        tune.start(TuneConfig(space="quick", data=None, run_dir=str(tmp_path / "run")))
    message = str(info.value)
    assert "data_shape: '16x20x3' -> '28x28x1'" in message and "data_classes: 3 -> 10" in message
    with pytest.raises(RunDirError, match="image_size: None -> '12x12'"):
        tune.start(TuneConfig(space="quick", data=str(rgb_data), image_size="12x12", run_dir=str(tmp_path / "run")))


@pytest.mark.parametrize("make, expected", [
    (lambda p: (p / "d.npz", np.savez(p / "d.npz", x_train=np.zeros((4, 9, 9)), y_train=np.zeros(4)))[0], "one class"),
    (lambda p: (p / "f", (p / "f" / "a").mkdir(parents=True))[0], "class folder with no images"),
    (lambda p: (p / "idx", (p / "idx").mkdir(), (p / "idx" / "train-images-idx3-ubyte").write_bytes(b"\x08\x03\x00\x00"),
                (p / "idx" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(4)))[0],
     "wrong magic number"),
])
@pytest.mark.parametrize("command", ["tune", "run"])
def test_bad_data_exits_2_names_the_file_and_writes_nothing(tmp_path, make, expected, command):
    path = make(tmp_path)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, [command, "--data", str(path), "--run-dir", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and expected in result.output
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_a_bad_image_size_exits_2_before_anything_runs(tmp_path):
    result = CliRunner().invoke(app, ["tune", "--image-size", "200", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--image-size: expected H or HxW" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_report_takes_the_run_s_data_where_it_moved_and_refuses_other_data(rgb_run, rgb_data, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(rgb_data, moved)
    ok = CliRunner().invoke(app, ["report", str(rgb_run), "--data", str(moved), "--latency-runs", "2"])
    assert ok.exit_code == 0, ok.output
    (moved / "test" / "red" / "0.png").unlink()  # other data: one test image fewer
    other = CliRunner().invoke(app, ["report", str(rgb_run), "--data", str(moved), "--latency-runs", "2"])
    assert other.exit_code == 2 and "not the data" in other.output and str(moved) in other.output


def test_a_run_resumes_on_the_same_data_and_an_older_mnist_run_resumes_too(rgb_data, tmp_path):
    from mnist_opt.tuning import tune
    from mnist_opt.tuning.config import TuneConfig

    cfg = TuneConfig(space="quick", data=str(rgb_data), run_dir=str(tmp_path / "rgb"))
    tune.start(cfg)
    tune.start(cfg)  # the same data again: resumed, not refused
    mnist = TuneConfig(space="quick", run_dir=str(tmp_path / "old"))
    tune.start(mnist)
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("data_shape", "data_classes", "image_size", "skip_bad_images"):  # as a run from before #45 has it
        config["search"].pop(key)
    for key in ("image_size", "skip_bad_images"):
        config["tune"].pop(key)
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    tune.start(mnist)  # resumes


@pytest.mark.slow
def test_a_report_on_other_data_trains_no_baseline_and_evaluate_refuses_changed_data(rgb_run, rgb_data, tmp_path):
    import shutil

    run, moved = tmp_path / "run", tmp_path / "data"
    shutil.copytree(rgb_run, run)
    shutil.copytree(rgb_data, moved)
    config = json.loads((run / "config.json").read_text())
    config["tune"]["data"] = str(moved)
    (run / "config.json").write_text(json.dumps(config))
    for name in ("baseline.keras", "baseline.json"):
        (run / name).unlink()
    (moved / "train" / "red" / "0.png").unlink()  # the data changed since the run was tuned
    report = CliRunner().invoke(app, ["report", str(run), "--latency-runs", "2"])
    assert report.exit_code == 2 and "not the data" in report.output
    assert not (run / "baseline.keras").exists() and not (run / "baseline.json").exists()
    evaluate = CliRunner().invoke(app, ["evaluate", str(run / "export" / "int8.tflite")])
    assert evaluate.exit_code == 2 and "not the data" in evaluate.output
