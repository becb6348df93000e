import gc
import weakref
from importlib import metadata

import numpy as np
import pytest

from mnist_opt import workarounds


def _fit_once(callbacks=()):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    model.fit(np.zeros((8, 4), "float32"), np.eye(2, dtype="float32")[[0, 1] * 4], epochs=1, verbose=0,
              callbacks=list(callbacks))


def test_training_registers_custom_gradients_that_the_block_releases(seed):
    """The leak is real (Keras' optimizer registers a gradient per traced step) and the block undoes it."""
    before = workarounds.custom_gradients()
    _fit_once()
    leaked = workarounds.custom_gradients() - before
    assert leaked  # if Keras stops doing this, the workaround can go

    before = workarounds.custom_gradients()
    with workarounds.released_custom_gradients():
        _fit_once()
        assert workarounds.custom_gradients() - before  # registered while training...
    assert workarounds.custom_gradients() == before  # ...and gone after


def test_frozen_heap_leaves_old_objects_out_and_collects_new_garbage():
    class Cycle:
        pass

    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError):
        with workarounds.frozen_heap():
            assert gc.get_freeze_count() > 0  # what was alive at the start: TensorFlow and the rest
            cycle = Cycle()
            cycle.self = cycle
            ref = weakref.ref(cycle)
            del cycle
            gc.collect()
            assert ref() is None  # garbage made inside the block is still collected
            raise RuntimeError("a trial fails")
    assert gc.get_freeze_count() == 0  # handed back, however the block ends


def test_every_workaround_was_written_for_the_installed_release():
    """A new pin in constraints.txt fails here until each workaround has been checked against it."""
    for package, version in workarounds.WRITTEN_FOR.items():
        assert metadata.version(package) == version, package


def test_another_release_warns_once_and_the_workaround_still_applies(monkeypatch):
    monkeypatch.setitem(workarounds.WRITTEN_FOR, "keras", "0.0")
    monkeypatch.setattr(workarounds, "_warned", set())
    with pytest.warns(UserWarning, match="written for keras 0.0, 3.15.1 is installed"):
        assert workarounds.check("keras", "something") is False
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")
        assert workarounds.check("keras", "something") is False  # once only


def test_keras_tuner_still_prints_from_parent_to_proto_and_the_patch_hides_it(capsys):
    """If Keras Tuner drops its debug print, the patch can go."""
    from keras_tuner.src import config
    from keras_tuner.src.engine import conditions

    workarounds.quiet_keras_tuner()
    workarounds.quiet_keras_tuner()  # twice: wrapped once
    patched = conditions.Parent.to_proto
    assert patched.quieted and not getattr(patched.original, "quieted", False)
    parent = conditions.Parent("conv_blocks", [2, 3])
    patched.original(parent)
    assert capsys.readouterr().out.strip() == "2"  # upstream's print
    proto = patched(parent)
    assert capsys.readouterr().out == "" and proto == patched.original(parent)
    assert config.DEBUG is False  # the flag still exists and is off


def test_tfmot_pcqat_shares_one_quantizer_across_layers_and_the_scheme_gives_each_its_own():
    """If tfmot gives each layer its own cluster-preserving quantizer, the workaround can go."""
    import tf_keras
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as registry)

    a, b = tf_keras.layers.Conv2D(4, 3), tf_keras.layers.Conv2D(4, 3)
    for layer in (a, b):
        layer.build((None, 8, 8, 2))  # a layer without weights gets the plain quantizer
    upstream = registry.Default8bitClusterPreserveQuantizeRegistry(True)
    assert upstream.get_quantize_config(a).weight_quantizer is upstream.get_quantize_config(b).weight_quantizer
    ours = workarounds.cluster_preserve_scheme().get_quantize_registry()
    first, second = ours.get_quantize_config(a).weight_quantizer, ours.get_quantize_config(b).weight_quantizer
    assert first is not second and first.preserve_sparsity and second.preserve_sparsity


def test_the_cqat_fallback_warning_is_hidden_in_the_block_only(caplog):
    import logging

    with workarounds.quiet_cqat_fallback():
        logging.warning("Input layer does not contain zero weights, so apply CQAT instead.")
        logging.warning("something else")
    logging.warning("Input layer does not contain zero weights, so apply CQAT instead.")
    assert [r.getMessage()[:14] for r in caplog.records] == ["something else", "Input layer do"]


def _hyperband_round(tmp_path, scores: list[float]):
    """A Keras Tuner Hyperband oracle whose first round has finished with `scores`."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = keras_tuner.oracles.HyperbandOracle(objective=keras_tuner.Objective("score", "max"), max_epochs=9,
                                                  factor=3, hyperparameters=hp, seed=3)
    oracle._set_project_dir(str(tmp_path), "hb")
    trials = []
    for score in scores:
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"score": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        trials.append(oracle.trials[trial.trial_id])
    return oracle, trials


def test_hyperband_promotes_the_highest_score_and_the_block_reorders_it(tmp_path):
    """Keras Tuner picks whom to promote by `trial.score` (what the workaround relies on); inside the
    block the keys decide instead, and every score is back after it."""
    scores = [0.5, 0.9, 0.7] + [0.1] * 6  # bracket 2's first round: 9 trials, 3 go on
    oracle, trials = _hyperband_round(tmp_path, scores)
    promoted = oracle.create_trial("tuner0").hyperparameters.values["tuner/trial_id"]
    assert promoted == trials[1].trial_id  # upstream: the highest score goes first

    oracle, trials = _hyperband_round(tmp_path / "again", scores)
    with workarounds.hyperband_promotes_by({t: (10.0 if t is trials[2] else 0.0) for t in trials}):
        promoted = oracle.create_trial("tuner0").hyperparameters.values["tuner/trial_id"]
    assert promoted == trials[2].trial_id
    assert [t.score for t in trials] == scores
