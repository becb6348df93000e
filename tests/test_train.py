import json

import keras

from mnist_opt.errors import RunDirError
from tuning import data, train
from tuning.hypermodel import BASELINE

import pytest


def test_baseline_trains_and_saves(seed, tmp_path):
    path = train.train_baseline(tmp_path / "run", epochs=1, seed=seed)
    model = keras.saving.load_model(path, safe_mode=True)
    meta = json.loads((tmp_path / "run" / "baseline.json").read_text())
    assert meta["hyperparameters"] == BASELINE and meta["params"] == model.count_params()
    assert meta["val_accuracy"] > 0.9  # one epoch of the reference CNN on 54k images
    split = data.load_split(seed)
    x = split.x_val[:200, ..., None] / 255.0
    assert (model.predict(x, verbose=0).argmax(1) == split.y_val[:200]).mean() > 0.9


def test_baseline_refuses_a_file_as_run_dir(seed, tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(RunDirError):
        train.train_baseline(tmp_path / "f", epochs=1, seed=seed)
