"""The device limits before training: MACs and activation peaks against the built model, each limit's check,
the arena measured once per design, and a search that keeps every limit."""

import json

import pytest

from mnist_opt.errors import SearchFailed
from mnist_opt.tuning import limits
from mnist_opt.tuning.architecture import BASELINE, build_cnn
from mnist_opt.tuning.config import TuneConfig
from mnist_opt.tuning.size import count_macs, count_params, estimate_flash_bytes, peak_activation_bytes

MNIST = dict(image_height=28, image_width=28, channels=1, classes=10)
DESIGNS = {  # every layer kind: plain and stride-2 convs, depthwise + pointwise, 1x1 transitions, pooling, dense
    "baseline": dict(BASELINE, **MNIST),
    "stride-2 stem": dict(BASELINE, **MNIST, conv_blocks=2, filters_0=4, filters_1=24, stem_stride=2,
                          batch_norm=True, global_pooling=True),
    "all kinds": dict(BASELINE, **MNIST, conv_blocks=3, convs_per_block=2, filters_0=8, filters_1=16, filters_2=32,
                      stem_stride=2, separable=True, transition=True, batch_norm=True, dense_units=16,
                      global_pooling=False, pool_last=True),
}


def _by_layer(values):
    """(MACs, peak of input + output bytes) of the Keras model itself, layer by layer."""
    import keras

    model = build_cnn(values)
    macs, peak = 0, 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            positions = 1
            for d in layer.output.shape[1:-1]:
                positions *= d
            macs += layer.kernel.numpy().size * positions
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.MaxPooling2D)):
            size = lambda t: int(keras.ops.prod(t.shape[1:]))  # noqa: E731
            peak = max(peak, size(layer.input) + size(layer.output))
    return macs, peak


@pytest.mark.parametrize("values", DESIGNS.values(), ids=DESIGNS.keys())
def test_macs_and_activation_peak_equal_the_built_models(values):
    assert (count_macs(values), peak_activation_bytes(values)) == _by_layer(values)


def test_macs_of_a_small_design_by_hand():
    v = DESIGNS["stride-2 stem"]  # 14x14 x 3x3x1x4, then 7x7 x 3x3x4x24, then 24 -> 10
    assert count_macs(v) == 14 * 14 * 36 + 7 * 7 * 864 + 240


class FakeMeasures(limits.Measures):
    """Measures whose arena is a fixed figure, counting the conversions asked for."""

    def __init__(self, arena: int):
        super().__init__(flash=None, arena=self._convert)
        self.figure, self.calls = arena, 0

    def _convert(self, values, images):
        self.calls += 1
        assert images.shape[1:] == (values["image_height"], values["image_width"], values["channels"])
        return self.figure


def _cfg(**kw):
    return TuneConfig(**kw)


def test_each_limit_names_its_option_and_the_cheap_checks_come_before_converting():
    v = DESIGNS["stride-2 stem"]
    fake = FakeMeasures(5000)
    assert limits.over(v, _cfg(), fake) is None and fake.calls == 0  # no limit: nothing converted
    assert "--max-params" in limits.over(v, _cfg(max_params=count_params(v) - 1), fake)
    assert "--max-macs" in limits.over(v, _cfg(max_macs=count_macs(v) - 1), fake)
    assert limits.over(v, _cfg(max_macs=count_macs(v)), fake) is None
    assert "--max-kb" in limits.over(v, _cfg(max_kb=(estimate_flash_bytes(v) - 1) / 1024), fake)
    assert fake.calls == 0
    # Below the activations alone: ruled out without converting.
    assert "at least" in limits.over(v, _cfg(max_arena_kb=(peak_activation_bytes(v) - 16) / 1024), fake)
    assert fake.calls == 0
    assert "--max-arena-kb" in limits.over(v, _cfg(max_arena_kb=4999 / 1024), fake) and fake.calls == 1
    assert limits.over(v, _cfg(max_arena_kb=5000 / 1024), fake) is None and fake.calls == 1  # measured once
    with pytest.raises(TypeError, match="Measures"):
        limits.over(v, _cfg(max_arena_kb=8), None)


def test_figures_record_macs_always_and_the_arena_where_it_is_measured():
    v = DESIGNS["baseline"]
    fake = FakeMeasures(7000)
    plain = limits.figures(v, _cfg(), fake)
    assert plain == {"params": count_params(v), "macs": count_macs(v), "est_flash_bytes": estimate_flash_bytes(v),
                     "arena_bytes": None}
    assert limits.figures(v, _cfg(max_arena_kb=8), fake)["arena_bytes"] == 7000
    assert limits.figures(v, _cfg(objectives=("accuracy", "arena")), fake)["arena_bytes"] == 7000 and fake.calls == 1


def test_the_arena_before_training_is_at_least_the_activation_peak():
    """(Against the trained file's arena, on every layer kind: tests/test_layer_kinds.py.)"""
    import numpy as np

    from mnist_opt.export import file_size

    values = DESIGNS["stride-2 stem"]
    images = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
    arena = file_size.arena_bytes(values, images)
    assert peak_activation_bytes(values) <= arena <= peak_activation_bytes(values) + 8 * 1024
    # The exact flash form under an arena limit: the form itself below it, none (None) above.
    assert file_size.flash_bytes(values, images, max_arena=arena) == file_size.flash_bytes(values, images)
    assert file_size.flash_bytes(values, images, max_arena=arena - 16) is None


def _tune_cfg(tmp_path, **kw):
    base = dict(space="tiny", tuner="pareto", max_trials=6, max_epochs=1, train_subset=500, final_epochs=1,
                seed=2, run_dir=str(tmp_path / "run"))
    return TuneConfig(**{**base, **kw})


def test_a_search_keeps_the_arena_and_mac_limits_and_records_both(seed, tmp_path):
    from mnist_opt import workflow

    cfg = _tune_cfg(tmp_path, max_arena_kb=6.0, max_macs=400_000)
    workflow.tune(cfg)
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    done = [t for t in trials if t["status"] == "completed"]
    assert done
    for t in trials:
        assert t["macs"] == count_macs(t["hyperparameters"]) and t["arena_bytes"] > 0
        if t["status"] == "completed":
            assert t["arena_bytes"] <= 6 * 1024 and t["macs"] <= 400_000
        else:
            assert t["status"] == "skipped" and ("--max-arena-kb" in t["error"] or "--max-macs" in t["error"])


def test_a_limit_nothing_meets_reports_the_smallest_arena_seen(seed, tmp_path):
    from mnist_opt import workflow

    with pytest.raises(SearchFailed, match=r"skipped.*the smallest arena seen was trial \d+'s, [\d,]+ bytes against "
                                           r"--max-arena-kb 0.5 \(512 bytes\)"):
        workflow.tune(_tune_cfg(tmp_path, max_arena_kb=0.5, tuner="random", max_trials=2))
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["skipped", "skipped"] and all(t["seconds"] < 5 for t in trials)


@pytest.mark.parametrize("extra, arena_kb", [([], 4.0), (["--max-arena-kb", "3"], 3.0)])
def test_a_device_profile_sets_the_limits_an_option_given_wins_and_config_records_it(seed, tmp_path, extra, arena_kb):
    from typer.testing import CliRunner

    from mnist_opt import devices
    from mnist_opt.cli import app

    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["tune", "--device", "cortex-m0plus", *extra, "--space", "tiny", "--tuner",
                                      "random", "--max-trials", "1", "--max-epochs", "1", "--train-subset", "300",
                                      "--final-epochs", "1", "--run-dir", str(run_dir)])
    assert result.exit_code in (0, 1), result.output  # 1: the one trial drawn did not fit the board
    tune = json.loads((run_dir / "config.json").read_text())["tune"]
    board = devices.load("cortex-m0plus")
    assert tune["device"] == board.to_dict() and tune["max_arena_kb"] == arena_kb
    assert (tune["max_kb"], tune["max_macs"]) == (board.limits()["max_kb"], board.limits()["max_macs"])
    for t in json.loads((run_dir / "trials.json").read_text()):
        assert t["status"] == "skipped" or (t["arena_bytes"] <= arena_kb * 1024 and t["macs"] <= tune["max_macs"])
