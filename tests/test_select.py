
import pytest

from mnist_opt.tuning import select, train
from mnist_opt.tuning.config import TuneConfig


def test_winner_is_the_best_model_that_can_be_retrained_in_time():
    def record(id_, acc):
        return {"id": id_, "val_accuracy": acc, "params": 1000}

    slow, fast, faster = record("0", 0.99), record("1", 0.98), record("2", 0.97)
    table = {"0": 54.0, "1": 10.8, "2": 5.4}  # minutes to retrain
    asked = []
    minutes = lambda r: asked.append(r["id"]) or table[r["id"]]  # noqa: E731
    cfg = lambda **kw: TuneConfig(final_epochs=3, **kw)  # noqa: E731
    assert select.winner([fast, slow, faster], cfg(), minutes) is slow  # no budget: the best
    assert asked == []  # and nothing measured
    lines = []
    assert select.winner([fast, slow, faster], cfg(final_minutes=15), minutes, lines.append) is fast
    assert lines and "trial 0 would take ~54.0 min to retrain, 0.8 of 3 epochs" in lines[0]
    assert "taking trial 1" in lines[0]
    assert asked == ["0", "1"]  # measured in rank order, only until one fits
    assert select.winner([fast, slow, faster], cfg(final_minutes=60), minutes) is slow
    # Half the epochs fit: the best is kept, and the retrain stops in time by itself.
    assert select.winner([fast, slow, faster], cfg(final_minutes=27), minutes) is slow
    assert select.winner([fast, slow, faster], cfg(final_minutes=26.9), minutes) is fast
    # Nothing fits: the best, left to the retrain's own time limit.
    assert select.winner([fast, slow], cfg(final_minutes=1), minutes) is slow


def test_retrain_minutes_are_measured_at_the_retrain_batch_size(seed, monkeypatch):
    from mnist_opt import data

    seen = []
    monkeypatch.setattr(train, "seconds_per_image", lambda values, split, batch_size: seen.append(batch_size) or 1e-3)
    split = data.load_split(seed)
    cfg = TuneConfig(trial_batch_size=32, batch_size=128, final_epochs=3)
    minutes = select.retrain_minutes({"hyperparameters": {}}, cfg, split)
    assert seen == [128] and minutes == pytest.approx(1e-3 * len(split.y_train) * 3 / 60)
