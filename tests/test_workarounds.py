"""mnist_opt/workarounds.py: the registry, and each workaround against the upstream it works around.

Three kinds of test. Those that show upstream still behaves as each workaround assumes (every probe
passes, Keras still leaks gradients, Keras Tuner still prints...): they fail when upstream changes, so
the workaround can be looked at again or go. One per entry that simulates the upstream change and
checks the message, or the fallback, a user would get. And the registry's own rules: ranges as in
pyproject.toml, no private import anywhere else.
"""

import ast
import gc
import tomllib
import warnings
import weakref
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from mnist_opt import workarounds
from mnist_opt.errors import WorkaroundUnavailable

ROOT = Path(__file__).parents[1]


@pytest.fixture
def fresh(monkeypatch):
    """No probe run and no warning given yet, as in a new process."""
    monkeypatch.setattr(workarounds, "_probed", {})
    monkeypatch.setattr(workarounds, "_warned", set())


# --- the registry ------------------------------------------------------------------------------


def test_every_probe_passes_on_the_installed_versions(fresh):
    """Each patched thing is there and behaves as assumed; in range, so nothing is said about it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for name, w in workarounds.REGISTRY.items():
            assert w.probe() is None, name
            assert workarounds.require(name) is True, name


def test_every_range_is_the_one_pyproject_toml_allows():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {canonicalize_name(r.name): r.specifier for r in map(Requirement, project["dependencies"])}
    for name, w in workarounds.REGISTRY.items():
        assert SpecifierSet(w.versions) == ranges[canonicalize_name(w.package)], name
        assert w.name == name


def test_a_version_outside_the_range_warns_once_and_the_workaround_still_applies(fresh, monkeypatch):
    monkeypatch.setattr(workarounds, "_installed", lambda package: "1.5.0" if package == "keras-tuner" else "0")
    with pytest.warns(UserWarning, match=r"'frozen-heap' was written for keras-tuner>=1.4.8,<1.5, and 1.5.0 is "
                                         r"installed; its probe passed, so it applies, untested"):
        assert workarounds.require("frozen-heap") is True
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert workarounds.require("frozen-heap") is True  # once only


def test_a_probe_that_raises_is_a_failed_probe_and_runs_once(fresh, monkeypatch):
    calls = []

    def probe():
        calls.append(1)
        import keras_tuner.src.no_such_module  # noqa: F401  (upstream moved a module)

    for fallback in (None, "it goes on without"):
        monkeypatch.setitem(workarounds.REGISTRY, "moved", workarounds.Workaround(
            "moved", "keras-tuner", workarounds.KERAS_TUNER, "of a reason", probe, fallback))
        workarounds._probed.clear()
        if fallback is None:
            with pytest.raises(WorkaroundUnavailable, match="ModuleNotFoundError: No module named") as info:
                workarounds.require("moved")
            assert info.value.exit_code == 1
            with pytest.raises(WorkaroundUnavailable):
                workarounds.require("moved")  # refused again, from the probe's one answer
        else:
            with pytest.warns(UserWarning, match="Going on without it: it goes on without"):
                assert workarounds.require("moved") is False
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                assert workarounds.require("moved") is False  # warned once
    assert len(calls) == 2  # once per process (per fresh cache), however often it is asked


# --- one simulated upstream change per entry ---------------------------------------------------
# Each monkeypatches upstream as a release might change it and returns what the message must say differs.


def _prints(monkeypatch):
    from keras_tuner.src.engine import conditions

    monkeypatch.setattr(conditions.Parent, "to_proto", None)
    return "Parent has no to_proto method"


def _tensorboard(monkeypatch):
    import keras

    monkeypatch.delattr(keras.callbacks.TensorBoard, "on_train_batch_end")
    return "no longer does its per-batch work in on_train_batch_end"


def _custom_gradients(monkeypatch):
    from tensorflow.python.framework import ops

    monkeypatch.setattr(ops, "RegisterGradient", lambda name: (lambda function: function))  # kept elsewhere
    return "tracing a tf.custom_gradient added no CustomGradient- entry"


def _gc_freeze(monkeypatch):
    monkeypatch.delattr(gc, "freeze")
    return "gc module has no freeze"


def _promotion(monkeypatch):
    from keras_tuner.src.tuners import hyperband

    # The order no longer follows trial.score: the candidates come out as they went in.
    monkeypatch.setattr(hyperband, "sorted", lambda items, key=None, reverse=False: list(items), raising=False)
    return "whose trial.score was set highest: it no longer chooses by trial.score"


def _brackets(monkeypatch):
    import keras_tuner

    oracle_class = keras_tuner.oracles.HyperbandOracle
    original = oracle_class._start_new_bracket

    def renamed(self):
        original(self)
        self._brackets[-1]["round_infos"] = self._brackets[-1].pop("rounds")
    monkeypatch.setattr(oracle_class, "_start_new_bracket", renamed)
    return "HyperbandOracle._brackets is no longer a list of {'rounds'"


def _max_trials(monkeypatch):
    import keras_tuner

    # HyperbandOracle reads max_trials at construction only: a later assignment is dropped.
    monkeypatch.setattr(keras_tuner.oracles.HyperbandOracle, "max_trials",
                        property(lambda self: None, lambda self, value: None), raising=False)
    return "answered a third trial with RUNNING, not STOPPED"


def _tuner_init(monkeypatch):
    import keras_tuner

    original = keras_tuner.Hyperband.__init__

    def more(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.rung_policy = "new"
    monkeypatch.setattr(keras_tuner.Hyperband, "__init__", more)
    return "keras_tuner.Hyperband.__init__ sets rung_policy"


def _build_hook(monkeypatch):
    import keras_tuner

    def changed(self, hp, trial):
        return self.hypermodel.build(hp)
    monkeypatch.setattr(keras_tuner.Tuner, "_build_hypermodel", changed)
    return "keras_tuner.Tuner._build_hypermodel takes (self, hp, trial), not (self, hp)"


def _chief(monkeypatch):
    from keras_tuner.src.distribute import oracle_chief

    monkeypatch.delattr(oracle_chief, "exit_chief")
    return "ImportError: cannot import name 'exit_chief'"


def _pcqat(monkeypatch):
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as registry)

    cls = registry.Default8bitClusterPreserveQuantizeRegistry
    original, shared = cls.get_quantize_config, {}

    def one_for_all(self, layer):  # configs (and their quantizers) cached across registries
        return shared.setdefault(type(layer), original(self, layer))
    monkeypatch.setattr(cls, "get_quantize_config", one_for_all)
    return "still hands two Conv2D layers one weight quantizer"


def _experimental_clustering(monkeypatch):
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster

    def without(to_cluster, number_of_clusters, cluster_centroids_init=None, **kwargs):
        return to_cluster
    monkeypatch.setattr(cluster, "cluster_weights", without)  # sparsity preservation moved elsewhere
    return "experimental cluster_weights takes no preserve_sparsity"


def _fused_bn(monkeypatch):
    import keras

    cls = keras.layers.BatchNormalization
    original = cls.call

    def unbiased(self, inputs, training=None, mask=None):  # Keras moves to the unbiased batch variance
        y = original(self, inputs, training=training, mask=mask)
        if training:
            self.moving_variance.assign(self.moving_variance * 1.01)
        return y
    monkeypatch.setattr(cls, "call", unbiased)
    return "disagree on a training step's moving variance"


def _tflite_schema(monkeypatch):
    from tflite_micro import runtime

    monkeypatch.delattr(runtime, "schema_fb")
    return "has no attribute 'schema_fb'"


def _draws(monkeypatch):
    import keras_tuner

    own = keras_tuner.oracles.HyperbandOracle._random_trial

    def drawn_elsewhere(self, trial_id, bracket):  # upstream draws with a method of another name
        self._random_values, saved = (lambda: {"x": 0.75}), self._random_values
        try:
            return own(self, trial_id, bracket)
        finally:
            self._random_values = saved
    monkeypatch.setattr(keras_tuner.oracles.HyperbandOracle, "_random_trial", drawn_elsewhere)
    return "not at the proposed 0.25"


def _tflm_compression(monkeypatch):
    from tflite_micro.tensorflow.lite.micro.compression import spec

    class Renamed:  # a spec whose fields are named otherwise
        def __init__(self, bits, mode):
            self.bits, self.mode = bits, mode
    monkeypatch.setattr(spec, "LookUpTableCompression", Renamed)
    return "has no attribute 'index_bitwidth'"


SIMULATIONS = {
    "keras-tuner-prints": _prints, "trial-tensorboard": _tensorboard, "custom-gradient-registry": _custom_gradients,
    "frozen-heap": _gc_freeze, "hyperband-promotion": _promotion, "hyperband-brackets": _brackets,
    "hyperband-max-trials": _max_trials, "tuner-init-with-oracle": _tuner_init, "build-hypermodel-hook": _build_hook,
    "keras-tuner-chief": _chief, "pcqat-per-layer-quantizers": _pcqat,
    "tfmot-experimental-clustering": _experimental_clustering, "fused-batch-norm": _fused_bn,
    "tflm-flatbuffer-schema": _tflite_schema, "tflm-compression": _tflm_compression,
    "hyperband-draws": _draws,
}


def test_every_workaround_has_a_simulated_upstream_change():
    assert set(SIMULATIONS) == set(workarounds.REGISTRY)


@pytest.mark.parametrize("name", sorted(SIMULATIONS))
def test_a_changed_upstream_is_named_with_its_package_version_and_range(name, fresh, monkeypatch, seed):
    """The message names the workaround, the package and its installed version, the range it was written
    for, and what differs; then either the fallback, or (with none) what to install."""
    differs = SIMULATIONS[name](monkeypatch)
    w = workarounds.REGISTRY[name]
    if w.fallback is None:
        with pytest.raises(WorkaroundUnavailable) as info:
            workarounds.require(name)
        message = str(info.value)
        assert f"pip install '{w.package}{w.versions}'" in message and "pip install -c constraints.txt" in message
    else:
        with pytest.warns(UserWarning) as record:
            assert workarounds.require(name) is False
        (message,) = [str(r.message) for r in record if "mnist-opt: workaround" in str(r.message)]
        assert f"Going on without it: {w.fallback}" in message
    for fact in (f"workaround '{name}'", f"{w.package} {metadata.version(w.package)}",
                 f"written for {w.package}{w.versions}", differs, f"docs/internals.md, '{name}'"):
        assert fact in message


# --- the call sites, where a probe fails ---------------------------------------------------------


def test_a_pareto_search_refuses_before_its_tuner_is_made(fresh, monkeypatch, tmp_path):
    from mnist_opt.tuning import space as space_module
    from mnist_opt.tuning.config import TuneConfig
    from mnist_opt.tuning.tuners import make_tuner

    _promotion(monkeypatch)
    with pytest.raises(WorkaroundUnavailable, match="'hyperband-promotion' does not fit keras-tuner"):
        make_tuner(TuneConfig(space="tiny", tuner="pareto"), space_module.load("tiny"), tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing made, no trial run


def test_the_pareto_oracle_cannot_promote_past_a_failed_probe(fresh, monkeypatch, tmp_path):
    """Even asked directly (not through make_tuner), the Pareto oracle refuses rather than promote by score."""
    from mnist_opt.tuning.oracles import ParetoHyperbandOracle

    _promotion(monkeypatch)
    oracle = ParetoHyperbandOracle(objective="val_accuracy", max_epochs=3, costs=lambda hp: (1.0,))
    with pytest.raises(WorkaroundUnavailable, match="hyperband-promotion"):
        oracle.populate_space("0")


def test_hyperband_with_max_trials_refuses_and_without_it_needs_no_probe(fresh, monkeypatch, tmp_path):
    from mnist_opt.tuning.config import TuneConfig
    from mnist_opt.tuning.tuners import require_workarounds

    _max_trials(monkeypatch)
    require_workarounds(TuneConfig(space="tiny", tuner="hyperband"))  # one Hyperband iteration: no cap to set
    with pytest.raises(WorkaroundUnavailable, match="'hyperband-max-trials'.*Hyperband would never end"):
        require_workarounds(TuneConfig(space="tiny", tuner="hyperband", max_trials=5))


def test_fused_batch_norm_falls_back_to_keras_own_layer(fresh, monkeypatch, seed):
    from mnist_opt.tuning.architecture import BASELINE, build_cnn

    _fused_bn(monkeypatch)
    with pytest.warns(UserWarning, match="'fused-batch-norm'.*Going on without it"):
        model = build_cnn(dict(BASELINE, batch_norm=True), fused_bn=True)
    assert {type(layer).__name__ for layer in model.layers if "Normalization" in type(layer).__name__} \
        == {"BatchNormalization"}


def test_the_trials_tensorboard_falls_back_to_keras_own(fresh, monkeypatch, tmp_path):
    import keras

    assert type(workarounds.trial_tensorboard(str(tmp_path))) is workarounds.tensorboard_class()
    _tensorboard(monkeypatch)
    workarounds._probed.clear()
    with pytest.warns(UserWarning, match="'trial-tensorboard'"):
        callback = workarounds.trial_tensorboard(str(tmp_path))
    assert type(callback) is keras.callbacks.TensorBoard


def test_the_frozen_heap_falls_back_to_no_freezing(fresh, monkeypatch):
    _gc_freeze(monkeypatch)
    with pytest.warns(UserWarning, match="'frozen-heap'"):
        with workarounds.frozen_heap():
            assert gc.get_freeze_count() == 0


def test_keras_tuner_is_left_printing_when_its_flag_is_gone(fresh, monkeypatch):
    from keras_tuner.src import config

    monkeypatch.setattr(config, "DEBUG", True)
    _prints(monkeypatch)
    with pytest.warns(UserWarning, match="'keras-tuner-prints'"):
        workarounds.quiet_keras_tuner()
    assert config.DEBUG is True  # nothing patched


def test_training_keeps_its_gradients_when_the_registry_changed(fresh, monkeypatch):
    _custom_gradients(monkeypatch)
    with pytest.warns(UserWarning, match="'custom-gradient-registry'.*stay in memory"):
        with workarounds.released_custom_gradients():
            pass


def _tuned(path):
    """A run directory whose tune looks finished: what export's input checks read before they probe."""
    path.mkdir()
    (path / "best.keras").write_bytes(b"")
    (path / "best_hparams.json").write_text('{"trial_id": "0", "hyperparameters": {}, "params": 1, "val_accuracy": 0.5}')
    (path / "config.json").write_text('{"tune": {}}')
    return str(path)


def test_an_export_with_pcqat_refuses_before_anything_runs(fresh, monkeypatch, tmp_path):
    from mnist_opt.errors import RunDirError
    from mnist_opt.export.config import ExportConfig
    from mnist_opt.export.export import check_inputs

    _pcqat(monkeypatch)
    with pytest.raises(RunDirError):  # no PCQAT asked for: the probe is not needed, the missing run is the error
        check_inputs(ExportConfig(run_dir=str(tmp_path / "none"), variants=("float32", "pruned_qat_int8")))
    with pytest.raises(WorkaroundUnavailable, match="'pcqat-per-layer-quantizers' does not fit "
                                                    "tensorflow-model-optimization"):
        check_inputs(ExportConfig(run_dir=_tuned(tmp_path / "run"), variants=("pruned_clustered_qat_int8",)))
    with pytest.raises(WorkaroundUnavailable):
        workarounds.cluster_preserve_scheme()  # and the scheme itself is not made


def test_an_export_with_clustering_refuses_before_anything_runs(fresh, monkeypatch, tmp_path):
    from mnist_opt.export.config import ExportConfig
    from mnist_opt.export.export import check_inputs

    _experimental_clustering(monkeypatch)
    with pytest.raises(WorkaroundUnavailable, match="'tfmot-experimental-clustering'"):
        check_inputs(ExportConfig(run_dir=_tuned(tmp_path / "run"), variants=("clustered_int8",)))


def test_reading_a_tflite_file_refuses_without_the_schema(fresh, monkeypatch):
    from mnist_opt.export import flatbuffer

    _tflite_schema(monkeypatch)
    with pytest.raises(WorkaroundUnavailable, match="'tflm-flatbuffer-schema'"):
        flatbuffer.ops(b"")


def test_the_chief_refuses_to_serve_without_keras_tuners_servicer(fresh, monkeypatch):
    _chief(monkeypatch)
    with pytest.raises(WorkaroundUnavailable, match="'keras-tuner-chief'"):
        workarounds.OracleService(object())


def test_the_build_hook_falls_back_to_no_fresh_optimizer(fresh, monkeypatch):
    from mnist_opt.tuning.config import TuneConfig
    from mnist_opt.tuning.tuners import require_workarounds

    _build_hook(monkeypatch)
    with pytest.warns(UserWarning, match="'build-hypermodel-hook'.*keep their parent's Adam state"):
        require_workarounds(TuneConfig(space="tiny", tuner="hyperband"))  # warns, goes on
    assert workarounds.require("build-hypermodel-hook") is False  # make_tuner leaves FreshOptimizer out


# --- no private API outside the registry ---------------------------------------------------------

PRIVATE = ("keras_tuner.src", "keras.src", "tf_keras.src", "tensorflow.python", "tensorflow_model_optimization.python",
           "tflite_micro.python", "tflite_micro.tensorflow", "ai_edge_litert.python")
SOURCE_DIRS = ("mnist_opt", "tuning", "export", "reports", "inference", "search_spaces")


def _imported(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node.lineno, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            yield node.lineno, [str(node.args[0].value)]


def _private(name: str) -> bool:
    parts = name.split(".")
    if parts[0] in ("mnist_opt", "__future__"):
        return False
    return any(name == p or name.startswith(p + ".") for p in PRIVATE) or \
        any(part.startswith("_") and not part.startswith("__") for part in parts[1:])


def test_no_module_but_the_registry_imports_a_private_path():
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).glob("*.py")):
            if path == ROOT / "mnist_opt" / "workarounds.py":
                continue
            for line, names in _imported(ast.parse(path.read_text(), str(path))):
                found += [f"{path.relative_to(ROOT)}:{line} {n}" for n in names[:1] if any(map(_private, names))]
    assert not found, "private imports outside mnist_opt/workarounds.py: " + ", ".join(found)


def test_the_private_path_rule_tells_private_from_public():
    assert _private("keras_tuner.src.distribute.oracle_chief") and _private("tensorflow.python.framework.ops")
    assert _private("tflite_micro.python.tflite_micro.runtime") and _private("keras_tuner._private")
    assert not _private("keras_tuner.engine.trial") and not _private("tflite_micro.runtime")
    assert not _private("mnist_opt.tuning.oracles") and not _private("__future__.annotations")


# --- upstream still behaves as each workaround assumes ---------------------------------------


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
    oracle.verbose = 0
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
    # The rounds as the Pareto oracle reads them: bracket 2's first, with the one promoted from it.
    assert ([t.trial_id for t in trials], {promoted}) in list(workarounds.hyperband_rounds(oracle))


def test_the_chiefs_service_ends_once_the_oracle_stopped_and_no_worker_is_left(tmp_path):
    """OracleService over Keras Tuner's servicer, as the chief loop uses it."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = keras_tuner.oracles.RandomSearchOracle(objective=keras_tuner.Objective("score", "max"), max_trials=1,
                                                     hyperparameters=hp, seed=3)
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "rs")
    service = workarounds.OracleService(oracle)
    assert not service.stopping and not service.over()
    trial = oracle.create_trial("worker0")
    assert workarounds.ongoing_trials(oracle) == {"worker0": trial}
    workarounds.forget_worker(oracle, "worker0")
    oracle.update_trial(trial.trial_id, {"score": 0.5})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    assert not service.over()  # no worker was told to stop yet
    from keras_tuner.src import protos

    service.servicer.CreateTrial(protos.get_service().CreateTrialRequest(tuner_id="worker1"), None)
    workarounds.forget_worker(oracle, "worker1")
    assert service.stopping and service.over()
