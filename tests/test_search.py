import json

import keras
import numpy as np
import pytest

from mnist_opt.errors import RunDirError, SearchFailed, SearchSpaceError
from tuning import search
from tuning.config import TuneConfig
from tuning.hypermodel import build_cnn, count_params


def _cfg(tmp_path, **kw):
    base = dict(tuner="random", max_trials=2, max_epochs=1, train_subset=500, final_epochs=1,
                run_dir=str(tmp_path / "run"))
    return TuneConfig(**{**base, **kw})


def test_smoke_search_records_every_trial(seed, smoke_run):
    run_dir, output = smoke_run
    trials = json.loads((run_dir / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["completed", "completed"]
    assert len({t["id"] for t in trials}) == 2
    for t in trials:
        assert 0.0 < t["val_accuracy"] <= 1.0 and t["seconds"] > 0 and t["error"] is None
        assert t["params"] == count_params(t["hyperparameters"])
    assert output.count("trial ") >= 2 and "val_acc" in output


def test_smoke_search_saves_a_loadable_best_model(seed, smoke_run):
    run_dir, _ = smoke_run
    best = json.loads((run_dir / "best_hparams.json").read_text())
    trials = {t["id"]: t for t in json.loads((run_dir / "trials.json").read_text())}
    assert best["search_val_accuracy"] == max(t["val_accuracy"] for t in trials.values())
    assert best["hyperparameters"] == trials[best["trial_id"]]["hyperparameters"]
    model = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
    assert model.count_params() == best["params"]
    # The saved model holds no augmentation: same architecture as a fresh build.
    assert len(model.layers) == len(build_cnn(best["hyperparameters"]).layers)
    probs = model.predict(np.zeros((3, 28, 28, 1), "float32"), verbose=0)
    assert probs.shape == (3, 10)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tune"]["seed"] == config["search"]["seed"]
    assert config["search"]["data_sha256"] == "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
    assert set(config["packages"]) >= {"tensorflow", "keras", "keras-tuner", "tensorflow-model-optimization"}
    assert any((run_dir / "tensorboard").rglob("*.tfevents.*"))


def test_over_budget_trials_are_skipped_untrained(seed, tmp_path):
    with pytest.raises(SearchFailed, match=r"no trial completed \(0 failed, 2 skipped\).*> --max-params 10"):
        search.tune(_cfg(tmp_path, max_params=10))
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["skipped", "skipped"]
    assert all(t["params"] > 10 and t["seconds"] < 5 for t in trials)


def test_failing_trials_are_recorded_and_the_first_error_reported(seed, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("input pipeline exploded")

    monkeypatch.setattr(search.pipeline, "dataset", broken)
    with pytest.raises(SearchFailed, match="first error: RuntimeError: input pipeline exploded"):
        search.tune(_cfg(tmp_path, max_trials=3))
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["failed"] * 3
    assert not (tmp_path / "run" / "best.keras").exists()


def test_resuming_with_other_settings_is_refused_and_writes_nothing(seed, smoke_run, tmp_path):
    run_dir, _ = smoke_run
    before = (run_dir / "config.json").read_bytes()
    cfg = TuneConfig(tuner="hyperband", seed=99, run_dir=str(run_dir))
    with pytest.raises(RunDirError) as info:
        search.tune(cfg)
    assert "seed: 1234 -> 99" in str(info.value) and "tuner: 'random' -> 'hyperband'" in str(info.value)
    assert "--overwrite" in str(info.value)
    assert (run_dir / "config.json").read_bytes() == before


def test_bad_inputs_write_nothing(seed, tmp_path):
    bad_space = tmp_path / "bad.toml"
    bad_space.write_text("[hyperparameters]\ndropout = 2.0\n")
    with pytest.raises(SearchSpaceError):
        search.tune(_cfg(tmp_path, space=str(bad_space)))
    assert not (tmp_path / "run").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is not a directory"):
        search.tune(_cfg(tmp_path, run_dir=str(tmp_path / "file")))
