"""Every patch of a library's behaviour, and every use of a library's private API, in one registry.

Each entry (`Workaround`, in `REGISTRY`) names the package it works around, the version range it was
written and tested for (that package's range in pyproject.toml), what upstream does, and a probe that
checks, before anything is patched, that the patched thing is there and behaves as assumed.
`require(name)` runs the probe once per process:

- it passes: the workaround applies (on a version outside its range, with a warning, once, that it
  is untested there);
- it fails, and the entry has a safe fallback: a warning, once, names the package, its version, the
  range, what differs and what the toolkit does instead; `require` returns False;
- it fails, and there is none: `WorkaroundUnavailable`, with the same facts and what to install.

The search calls `require` for everything it leans on before any trial runs (`tuning.tuners`), so a
changed library stops a run with that message instead of failing every trial. Probes import the
private modules they check inside themselves: a module that moved is a failed probe, not an
ImportError when this module is imported. Why each exists, and when it can go, is in
docs/internals.md under its name; tests/test_workarounds.py simulates each upstream change.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from mnist_opt.errors import WorkaroundUnavailable

# The ranges of pyproject.toml's dependencies (tests/test_workarounds.py checks that they agree).
KERAS = ">=3.15,<3.16"
KERAS_TUNER = ">=1.4.8,<1.5"
TENSORFLOW = ">=2.21,<2.22"
TFMOT = ">=0.8.1,<0.9"
TFLITE_MICRO = ">=0.dev20261023182759"


@dataclass(frozen=True)
class Workaround:
    name: str
    package: str  # the distribution whose behaviour or internals it leans on
    versions: str  # the PEP 440 range it was written and tested for
    upstream: str  # what upstream does that needs working around, with its issue where there is one
    probe: Callable[[], str | None]  # None: there and behaves as assumed; else what differs
    fallback: str | None  # what the toolkit does instead when the probe fails; None: no safe way, refuse


_probed: dict[str, str | None] = {}  # name -> the probe's answer, once per process
_warned: set[str] = set()


@functools.cache
def _installed(package: str) -> str:
    try:
        return metadata.version(package)  # reads the package's metadata from disk: once, not every trial
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _tested(installed: str, versions: str) -> bool:
    try:
        return SpecifierSet(versions).contains(Version(installed), prereleases=True)
    except InvalidVersion:
        return False


def _run(probe: Callable[[], str | None]) -> str | None:
    try:
        return probe()
    except Exception as exc:  # a module that moved, an attribute gone, a changed signature: all say what differs
        return f"{type(exc).__name__}: {exc}"


def _warn_once(name: str, message: str) -> None:
    if name not in _warned:
        _warned.add(name)
        warnings.warn(message, UserWarning, stacklevel=3)


def require(name: str) -> bool:
    """Whether workaround `name` applies here; its probe runs once. Raises WorkaroundUnavailable where
    the probe fails and there is no safe fallback (see the module's docstring)."""
    w = REGISTRY[name]
    if name not in _probed:
        _probed[name] = _run(w.probe)
    differs, installed = _probed[name], _installed(w.package)
    if differs is None:
        if not _tested(installed, w.versions):
            _warn_once(name, f"mnist-opt: workaround '{name}' was written for {w.package}{w.versions}, and "
                             f"{installed} is installed; its probe passed, so it applies, untested on this version "
                             f"(docs/internals.md, '{name}')")
        return True
    what = (f"mnist-opt: workaround '{name}' does not fit {w.package} {installed} (written for "
            f"{w.package}{w.versions}): {differs}. It is there because {w.upstream}.")
    install = f"pip install '{w.package}{w.versions}'"
    if w.fallback is None:
        raise WorkaroundUnavailable(
            f"{what} There is no safe way round it: install the versions it was written for ({install}, or "
            f"`pip install -c constraints.txt .` in a checkout, the exact tested set); docs/internals.md, '{name}'.")
    _warn_once(name, f"{what} Going on without it: {w.fallback}. To have it back: {install} "
                     f"(docs/internals.md, '{name}').")
    return False


# --- keras-tuner-prints ------------------------------------------------------------------------


def _probe_prints() -> str | None:
    from keras_tuner.src import config
    from keras_tuner.src.engine import conditions

    if not hasattr(config, "DEBUG"):
        return "keras_tuner.src.config has no DEBUG flag"
    if not callable(getattr(conditions.Parent, "to_proto", None)):
        return "keras_tuner.src.engine.conditions.Parent has no to_proto method"
    return None


def quiet_keras_tuner() -> None:
    """Keras Tuner 1.4.8 prints too much; make it print only what this toolkit logs.

    - `keras_tuner.src.config.DEBUG` makes it print every failed trial's traceback to stdout;
      failures go to trials.json and one log line each instead.
    - `conditions.Parent.to_proto` has a debug `print(self.values[0])`: every conditional
      hyperparameter sent over gRPC printed a bare number on the chief's and the workers' stdout.
    """
    if not require("keras-tuner-prints"):
        return
    from keras_tuner.src import config
    from keras_tuner.src.engine import conditions

    config.DEBUG = False
    original = conditions.Parent.to_proto
    if getattr(original, "quieted", False):
        return

    def to_proto(self):
        with contextlib.redirect_stdout(io.StringIO()):
            return original(self)
    to_proto.quieted, to_proto.original = True, original
    conditions.Parent.to_proto = to_proto


# --- trial-tensorboard -------------------------------------------------------------------------


def _probe_tensorboard() -> str | None:
    import keras

    params = inspect.signature(keras.callbacks.TensorBoard.__init__).parameters
    missing = [p for p in ("log_dir", "write_graph", "profile_batch", "update_freq") if p not in params]
    if missing:
        return f"keras.callbacks.TensorBoard takes no {', '.join(missing)}"
    if "on_train_batch_end" not in vars(keras.callbacks.TensorBoard):
        return "keras.callbacks.TensorBoard no longer does its per-batch work in on_train_batch_end"
    return None


@functools.cache
def tensorboard_class() -> type:
    """Keras' TensorBoard callback as trials use it: a log per epoch, none per batch.

    Keras' own, even at `update_freq="epoch"`, calls `tf.summary.scalar` for every metric after
    every batch call, with no writer to write them to (docs/performance.md). Named
    `TensorBoard`: Keras Tuner gives a callback of that class name the trial's own log directory
    and its HParams. Trials get it through `trial_tensorboard`, which probes it first. Made on
    first use: this module is imported where Keras is not (TensorFlow Lite Micro's workers).
    """
    import keras

    class TensorBoard(keras.callbacks.TensorBoard):
        def __init__(self, log_dir: str):
            super().__init__(log_dir, write_graph=False, profile_batch=0, update_freq="epoch")

        def on_train_batch_end(self, batch, logs=None):
            pass

    return TensorBoard


def trial_tensorboard(log_dir: str):
    """The trials' TensorBoard callback: `tensorboard_class()`'s, or Keras' own where its probe fails."""
    import keras

    if require("trial-tensorboard"):
        return tensorboard_class()(log_dir)
    return keras.callbacks.TensorBoard(log_dir)


# --- custom-gradient-registry ------------------------------------------------------------------


def _gradient_registry() -> dict:
    from tensorflow.python.framework import ops

    return ops._gradient_registry._registry


def custom_gradients() -> set[str]:
    """Names of the gradient functions that `tf.custom_gradient` has registered in this process."""
    return {name for name in _gradient_registry() if name.startswith("CustomGradient-")}


def _probe_custom_gradients() -> str | None:
    import tensorflow as tf

    registry = _gradient_registry()
    if not isinstance(registry, dict):
        return f"TensorFlow's gradient registry (ops._gradient_registry) is a {type(registry).__name__}, not a dict"

    @tf.custom_gradient
    def same(x):
        return tf.identity(x), lambda dy: dy

    before = custom_gradients()
    tf.function(same).get_concrete_function(tf.TensorSpec([], tf.float32))
    added = custom_gradients() - before
    for name in added:
        del registry[name]
    if not added:
        return "tracing a tf.custom_gradient added no CustomGradient- entry to TensorFlow's gradient registry"
    return None


@contextlib.contextmanager
def released_custom_gradients():
    """Drop the gradient functions that `tf.custom_gradient` registered inside the block.

    Keras 3's optimizer sums gradients through `tf.distribute`'s `all_reduce`, which registers a
    custom gradient in TensorFlow's global gradient registry every time a train step is traced,
    and never removes it. Each one keeps its whole train-step graph alive (docs/performance.md,
    memory), which `clear_session` and `gc.collect` cannot free. Use around training whose
    graphs are not traced again after the block.
    """
    if not require("custom-gradient-registry"):
        yield
        return
    registry = _gradient_registry()
    before = custom_gradients()
    try:
        yield
    finally:
        for name in custom_gradients() - before:
            del registry[name]


# --- frozen-heap -------------------------------------------------------------------------------


def _probe_gc_freeze() -> str | None:
    missing = [f for f in ("freeze", "unfreeze", "get_freeze_count") if not hasattr(gc, f)]
    return f"this Python's gc module has no {', '.join(missing)}" if missing else None


@contextlib.contextmanager
def frozen_heap():
    """Leave the objects alive now (TensorFlow, Keras, the data) out of garbage collection in the block.

    Keras Tuner collects garbage twice before every trial, and each full collection walks every
    object in the process: a tenth of a one-epoch trial when measured (docs/performance.md). What the block
    creates is collected as usual; the rest is handed back to the collector at its end.
    """
    if not require("frozen-heap"):
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# --- hyperband-promotion, hyperband-brackets, hyperband-max-trials -----------------------------


def _probe_oracle(directory: str, oracle_class: str = "HyperbandOracle", **kwargs):
    """A tiny, silent Keras Tuner oracle over one float, saving its state under `directory`."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = getattr(keras_tuner.oracles, oracle_class)(objective=keras_tuner.Objective("score", "max"),
                                                        hyperparameters=hp, seed=3, **kwargs)
    oracle.verbose = 0
    oracle._set_project_dir(directory, "probe")
    return oracle


def _finish(oracle, trial, score: float):
    oracle.update_trial(trial.trial_id, {"score": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return oracle.trials[trial.trial_id]


def _promote_once(directory: str, raise_third: bool):
    """A Hyperband round of three trials (max_epochs=3, factor=3: bracket 1 keeps one of three) and
    the trial its next create_trial makes. With `raise_third`, the third's score is raised above the
    others after it ended, as `hyperband_promotes_by` does. Returns (oracle, ended trials, next trial)."""
    oracle = _probe_oracle(directory, max_epochs=3, factor=3)
    ended = []
    for score in (0.5, 0.9, 0.7, 0.1, 0.1, 0.1):  # more than one round, should upstream's round grow
        trial = oracle.create_trial("probe")
        if "tuner/trial_id" in trial.hyperparameters.values:
            return oracle, ended, trial
        ended.append(_finish(oracle, trial, score))
        if raise_third and len(ended) == 3:
            ended[2].score = 1.0
    return oracle, ended, None


def _probe_promotion() -> str | None:
    with tempfile.TemporaryDirectory() as directory:
        _, ended, promoted = _promote_once(directory, raise_third=True)
    if promoted is None:
        return f"a HyperbandOracle promoted no trial after {len(ended)} ended trials"
    if promoted.hyperparameters.values["tuner/trial_id"] != ended[2].trial_id:
        return (f"a HyperbandOracle promoted trial {promoted.hyperparameters.values['tuner/trial_id']}, not trial "
                f"{ended[2].trial_id}, whose trial.score was set highest: it no longer chooses by trial.score")
    return None


@contextlib.contextmanager
def hyperband_promotes_by(keys: dict):
    """Make Keras Tuner's Hyperband promote by `keys` (trial -> number, higher first) inside the block.

    keras-tuner 1.4.8's `HyperbandOracle.populate_space` chooses the trial it promotes to a round's
    next rung inline, `sorted(candidates, key=lambda t: t.score, ...)[0]` (tuners/hyperband.py), with no
    hook for another order. Keras Tuner's own multi-objective support (keras-team/keras-tuner#556, #641)
    sums the objectives into one score, which has no Pareto front to promote from.
    So each keyed trial's `score` is its key while the oracle chooses, and its own score again after.
    Nothing else reads a score meanwhile: a one-process search runs the oracle in its own thread, and the
    distributed chief serves it from one gRPC thread (`tuning/distributed.py`, max_workers=1); Keras
    Tuner's `create_trial` saves the oracle after `populate_space` returns.
    """
    require("hyperband-promotion")
    scores = {trial: trial.score for trial in keys}
    try:
        for trial, key in keys.items():
            trial.score = key
        yield
    finally:
        for trial, score in scores.items():
            trial.score = score


def _rounds(oracle) -> Iterator[tuple[list[str], set[str]]]:
    for bracket in oracle._brackets:
        for done, promoted in zip(bracket["rounds"], bracket["rounds"][1:]):
            yield [info["id"] for info in done], {info["past_id"] for info in promoted}


def hyperband_rounds(oracle) -> Iterator[tuple[list[str], set[str]]]:
    """For each round of a HyperbandOracle's live brackets that has a next one: (the ids of its trials,
    the ids of those promoted from it so far). Keras Tuner keeps them in `_brackets`, with no public view."""
    require("hyperband-brackets")
    return _rounds(oracle)


def _probe_brackets() -> str | None:
    with tempfile.TemporaryDirectory() as directory:
        try:  # upstream's own round, and our reading of it, both go through `_brackets`
            oracle, ended, promoted = _promote_once(directory, raise_third=False)
            rounds = list(_rounds(oracle))
        except (AttributeError, KeyError, TypeError) as exc:
            return ("HyperbandOracle._brackets is no longer a list of {'rounds': [[{'id', 'past_id'}, ...], ...]} "
                    f"dicts ({type(exc).__name__}: {exc})")
    if promoted is None:
        return f"a HyperbandOracle promoted no trial after {len(ended)} ended trials"
    want = ([t.trial_id for t in ended[:3]], {promoted.hyperparameters.values["tuner/trial_id"]})
    if want not in rounds:
        return (f"HyperbandOracle._brackets does not record the round it promoted from: expected "
                f"{want}, found {rounds}")
    return None


DRAW_TRIES = 8  # proposals asked for before Keras Tuner's own draw, while each one was tried already


@contextlib.contextmanager
def _draws(oracle, propose: Callable[[], dict | None]):
    own = oracle._random_values

    def draw():
        for _ in range(DRAW_TRIES):
            values = propose()
            if values is None:
                break
            if not oracle._duplicate(values):
                return values
        return own()
    oracle._random_values = draw
    try:
        yield
    finally:
        del oracle._random_values  # the class's method again


def hyperband_draws(oracle, propose: Callable[[], dict | None]):
    """A context in which Keras Tuner's Hyperband starts its new trials from `propose()` (None: its own draw).

    keras-tuner 1.4.8's `HyperbandOracle` fills each bracket's first round with `self._random_values()`
    (tuners/hyperband.py, `_random_trial`): uniform draws, with no hook for another proposal. A proposal
    Keras Tuner has tried already (`_duplicate`) is passed over for its own draw. Where the probe fails,
    a context that changes nothing (the fallback: uniform draws only).
    """
    return _draws(oracle, propose) if require("hyperband-draws") else contextlib.nullcontext()


def _probe_draws() -> str | None:
    with tempfile.TemporaryDirectory() as directory:
        oracle = _probe_oracle(directory, max_epochs=3, factor=3)
        with _draws(oracle, lambda: {"x": 0.25}):
            first = oracle.create_trial("probe")
            _finish(oracle, first, 0.5)
            second = oracle.create_trial("probe")  # the same proposal, tried already: upstream's own draw
        if "_random_values" in vars(oracle):
            return "the oracle kept the patched _random_values after the block"
    x1, x2 = first.hyperparameters.values.get("x"), second.hyperparameters.values.get("x")
    if x1 != 0.25:
        return f"HyperbandOracle started a trial at x={x1}, not at the proposed 0.25: it no longer draws with _random_values"
    if x2 == 0.25:
        return "HyperbandOracle._duplicate no longer tells a tried proposal"
    return None


def _probe_max_trials() -> str | None:
    with tempfile.TemporaryDirectory() as directory:
        oracle = _probe_oracle(directory, max_epochs=3, factor=3, hyperband_iterations=None)
        oracle.max_trials = 2
        for tuner_id in ("a", "b"):
            _finish(oracle, oracle.create_trial(tuner_id), 0.5)
        third = oracle.create_trial("c")
    if third.status != "STOPPED":
        return (f"a HyperbandOracle given max_trials=2 after it was made answered a third trial with "
                f"{third.status}, not STOPPED: with --max-trials, Hyperband would never end")
    return None


def set_max_trials(oracle, max_trials: int) -> None:
    """Cap a HyperbandOracle at `max_trials`: Keras Tuner's constructor takes none, its `create_trial` honours it."""
    require("hyperband-max-trials")
    oracle.max_trials = max_trials


# --- tuner-init-with-oracle, build-hypermodel-hook ---------------------------------------------


@contextlib.contextmanager
def _no_chief():
    """No distributed role while a probe makes tuners (Keras Tuner reads it from the environment)."""
    keys = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    saved = {k: os.environ.pop(k) for k in keys if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _probe_tuner_init() -> str | None:
    import keras_tuner

    def build(hp):
        hp.Float("x", 0.0, 1.0)

    objective = keras_tuner.Objective("score", "max")
    with tempfile.TemporaryDirectory() as directory, _no_chief():
        own = keras_tuner.Hyperband(hypermodel=build, objective=objective, max_epochs=3, directory=directory,
                                    project_name="own")
        ours = keras_tuner.Hyperband.__new__(keras_tuner.Hyperband)
        keras_tuner.Tuner.__init__(ours, oracle=keras_tuner.oracles.HyperbandOracle(objective=objective, max_epochs=3),
                                   hypermodel=build, directory=directory, project_name="ours")  # as init_tuner does
    missing = sorted(set(vars(own)) - set(vars(ours)))
    if missing:
        return (f"keras_tuner.Hyperband.__init__ sets {', '.join(missing)}, which keras_tuner.Tuner.__init__ "
                "with a made oracle does not")
    return None


def init_tuner(tuner, oracle, **kwargs) -> None:
    """`keras_tuner.Tuner.__init__` on `tuner` with an oracle made already, skipping its own class's
    __init__ (Hyperband's makes a plain HyperbandOracle; the recorder's tuners bring theirs)."""
    import keras_tuner

    if isinstance(tuner, keras_tuner.Hyperband):
        require("tuner-init-with-oracle")
    keras_tuner.Tuner.__init__(tuner, oracle=oracle, **kwargs)


def _probe_build_hook() -> str | None:
    import keras_tuner

    for cls in (keras_tuner.Tuner, keras_tuner.Hyperband):
        method = getattr(cls, "_build_hypermodel", None)
        if method is None:
            return f"keras_tuner.{cls.__name__} has no _build_hypermodel"
        params = list(inspect.signature(method).parameters)
        if params != ["self", "hp"]:
            return f"keras_tuner.{cls.__name__}._build_hypermodel takes ({', '.join(params)}), not (self, hp)"
    if "self._build_hypermodel(" not in inspect.getsource(keras_tuner.Tuner._try_build):
        return "keras_tuner.Tuner no longer builds a trial's model through _build_hypermodel"
    return None


# --- keras-tuner-chief -------------------------------------------------------------------------


def _probe_chief() -> str | None:
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    if not callable(getattr(protos.get_service_grpc(), "add_OracleServicer_to_server", None)):
        return "keras_tuner.src.protos' gRPC service has no add_OracleServicer_to_server"
    with tempfile.TemporaryDirectory() as directory:
        oracle = _probe_oracle(directory, "RandomSearchOracle", max_trials=1)
        if oracle._display.verbose != 0:
            return "setting an oracle's verbose no longer quiets its display"
        servicer = OracleServicer(oracle)
        if getattr(servicer, "stop_triggered", None) is not False:
            return "OracleServicer has no stop_triggered flag, False at the start"
        request = protos.get_service().CreateTrialRequest
        servicer.CreateTrial(request(tuner_id="w0"), None)
        trial = oracle.ongoing_trials.get("w0")
        if trial is None or "w0" not in oracle.tuner_ids:
            return "an oracle no longer keeps its running trials by tuner id (ongoing_trials, tuner_ids)"
        if exit_chief(oracle):
            return "exit_chief lets the chief end while a trial is running"
        servicer.CreateTrial(request(tuner_id="w1"), None)
        if servicer.stop_triggered is not True:
            return "OracleServicer did not set stop_triggered when the oracle had no trial left"
        oracle.tuner_ids.discard("w0")
        oracle.tuner_ids.discard("w1")
        _finish(oracle, trial, 0.5)
        if not exit_chief(oracle):
            return "exit_chief keeps the chief waiting after the last trial ended and its workers were forgotten"
    return None


class OracleService:
    """Keras Tuner's gRPC oracle service, as `tuning/distributed.py`'s chief serves it.

    Keras Tuner has no public API for it: its own chief loop (`keras_tuner.src.distribute.oracle_chief`)
    waits for every worker it has ever seen, so the chief serves the same servicer with a loop of its own.
    """

    def __init__(self, oracle):
        require("keras-tuner-chief")
        from keras_tuner.src.distribute.oracle_chief import OracleServicer

        self.oracle = oracle
        self.servicer = OracleServicer(oracle)

    def add_to(self, server) -> None:
        from keras_tuner.src import protos

        protos.get_service_grpc().add_OracleServicer_to_server(self.servicer, server)

    @property
    def stopping(self) -> bool:
        """Whether the oracle has told a worker to stop: no trial is left to hand out."""
        return self.servicer.stop_triggered

    def over(self) -> bool:
        """Whether the search is over: stopping, no trial running, every worker gone."""
        from keras_tuner.src.distribute.oracle_chief import exit_chief

        return self.stopping and exit_chief(self.oracle)


def ongoing_trials(oracle) -> dict:
    """Worker (tuner) id -> the trial it is running, as Keras Tuner's oracle keeps them (`ongoing_trials`)."""
    return oracle.ongoing_trials


def forget_worker(oracle, tuner_id: str) -> None:
    """Stop the oracle waiting for `tuner_id` (Keras Tuner's chief ends only once `tuner_ids` is empty)."""
    oracle.tuner_ids.discard(tuner_id)


# --- pcqat-per-layer-quantizers ----------------------------------------------------------------


def _pcqat_scheme():
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as registry, default_8bit_cluster_preserve_quantize_scheme as scheme)

    class PerLayerRegistry(registry.Default8bitClusterPreserveQuantizeRegistry):
        def __init__(self, preserve_sparsity):
            super().__init__(preserve_sparsity)
            self.preserve_sparsity = preserve_sparsity

        def get_quantize_config(self, layer):
            fresh = registry.Default8bitClusterPreserveQuantizeRegistry(self.preserve_sparsity)
            return fresh.get_quantize_config(layer)

    class Scheme(scheme.Default8BitClusterPreserveQuantizeScheme):
        def get_quantize_registry(self):
            return PerLayerRegistry(self.preserve_sparsity)

    return Scheme(preserve_sparsity=True)


def _probe_pcqat() -> str | None:
    import tf_keras

    registry = _pcqat_scheme().get_quantize_registry()
    layers = [tf_keras.layers.Conv2D(4, 3), tf_keras.layers.Conv2D(4, 3)]
    for layer in layers:
        layer.build((None, 8, 8, 2))  # a layer without weights gets the plain quantizer
    first, second = (registry.get_quantize_config(layer).weight_quantizer for layer in layers)
    if first is second:
        return "a cluster-preserving registry made per layer still hands two Conv2D layers one weight quantizer"
    if not (getattr(first, "preserve_sparsity", False) and getattr(second, "preserve_sparsity", False)):
        return "the per-layer cluster-preserving quantizers do not preserve sparsity"
    return None


def cluster_preserve_scheme():
    """tfmot's PCQAT scheme (cluster- and sparsity-preserving QAT), with one weight quantizer per layer.

    tfmot 0.8.1's registry hands the same quantizer object to every Conv2D (and another to every
    Dense), and a quantizer turns its own `preserve_sparsity` off, with the warning "Input layer does
    not contain zero weights, so apply CQAT instead", as soon as it is built on a layer with no zeros.
    The first conv is left dense on purpose, so it switched sparsity preservation off for every conv
    after it: the pruned convs of a PCQAT model came out of training with 0% zeros instead of 80%.
    A fresh registry per layer gives each layer its own quantizer. Its warning, true of the layers
    left dense and of no other now, is kept off the log (`quiet_cqat_fallback`).
    """
    require("pcqat-per-layer-quantizers")
    return _pcqat_scheme()


@contextlib.contextmanager
def quiet_cqat_fallback():
    """Hide tfmot's "apply CQAT instead" warning (root logger) for the layers pruning leaves dense.

    A log filter, not a patch: if tfmot words it otherwise, the warning shows and nothing breaks.
    """
    import logging

    def keep(record):
        return "so apply CQAT instead" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


# --- tfmot-experimental-clustering ---------------------------------------------------------------


def _experimental_cluster_weights():
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster

    return cluster.cluster_weights


def _probe_experimental_clustering() -> str | None:
    params = inspect.signature(_experimental_cluster_weights()).parameters
    missing = [p for p in ("number_of_clusters", "cluster_centroids_init", "preserve_sparsity") if p not in params]
    if missing:
        return f"tfmot's experimental cluster_weights takes no {', '.join(missing)}"
    return None


def experimental_cluster_weights() -> Callable:
    """tfmot's `cluster_weights` that takes `preserve_sparsity` (`export/cluster.py`): its public
    `tfmot.clustering.keras.experimental` is empty in 0.8.1, and its own PCQAT tutorial imports this one."""
    require("tfmot-experimental-clustering")
    return _experimental_cluster_weights()


# --- fused-batch-norm --------------------------------------------------------------------------


def fused_batch_norm(layer, inputs):
    """A Keras 3 `BatchNormalization` layer's training step through TensorFlow's fused kernel, or None
    where the kernel does not apply (renorm, synchronized, not NHWC, no center or scale).

    Same variables and the same moving averages as the layer's own step (Keras' biased batch variance).
    It reads the layer's settings and variables, which Keras documents as constructor arguments, not as
    a contract for a subclass's `call`. Why, and why bfloat16 only on multiples of 16 channels:
    `tuning/fused_bn.py`.
    """
    import tensorflow as tf

    if layer.renorm or layer.synchronized or len(inputs.shape) != 4 or layer.axis not in (-1, 3) \
            or not (layer.center and layer.scale):
        return None
    if inputs.dtype != tf.float32 and inputs.shape[-1] % 16:
        inputs = tf.cast(inputs, tf.float32)
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, tf.convert_to_tensor(layer.gamma), tf.convert_to_tensor(layer.beta), epsilon=layer.epsilon,
        is_training=True)
    n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
    variance = variance * (n - 1.0) / n  # the kernel's is unbiased; Keras averages the biased one
    layer.moving_mean.assign(layer.moving_mean * layer.momentum + mean * (1.0 - layer.momentum))
    layer.moving_variance.assign(layer.moving_variance * layer.momentum + variance * (1.0 - layer.momentum))
    return tf.cast(y, layer.compute_dtype)


def _probe_fused_bn() -> str | None:
    import keras
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (4, 3, 3, 4)).astype("float32"))
    stock, fused = (keras.layers.BatchNormalization(momentum=0.9, dtype="float32") for _ in range(2))
    for layer in (stock, fused):
        layer.build(x.shape)
    want = stock(x, training=True)
    got = fused_batch_norm(fused, x)
    if got is None:
        return "a plain BatchNormalization layer reads as one the fused kernel does not apply to"
    for what, a, b in (("output", got, want), ("moving mean", fused.moving_mean, stock.moving_mean),
                       ("moving variance", fused.moving_variance, stock.moving_variance)):
        if not np.allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4):
            return f"TensorFlow's fused kernel and keras.layers.BatchNormalization disagree on a training step's {what}"
    return None


# --- tflm-flatbuffer-schema --------------------------------------------------------------------


@dataclass(frozen=True)
class TFLiteSchema:
    """The .tflite flatbuffer reader that the `tflite-micro` package carries (not its documented API)."""

    fb: Any  # the generated schema module: BuiltinOperator, TensorType, ModelT, ...
    to_object: Callable[[bytearray], Any]  # a file's bytes -> its ModelT
    builtin_code: Callable[[Any], int]  # an OperatorCodeT -> its builtin op code


def _tflite_schema() -> TFLiteSchema:
    from tflite_micro import runtime

    return TFLiteSchema(runtime.schema_fb, runtime.convert_bytearray_to_object,
                        runtime.get_builtin_code_from_operator_code)


def _probe_tflite_schema() -> str | None:
    import flatbuffers

    s = _tflite_schema()
    code = s.fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.fb.BuiltinOperator.CONV_2D
    model = s.fb.ModelT()
    model.version, model.operatorCodes = 3, [code]
    builder = flatbuffers.Builder(64)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    back = s.to_object(bytearray(builder.Output()))
    if s.builtin_code(back.operatorCodes[0]) != s.fb.BuiltinOperator.CONV_2D:
        return "tflite_micro.runtime no longer reads back the op of a flatbuffer written with its schema"
    if not hasattr(s.fb.TensorType, "INT8"):
        return "tflite_micro.runtime.schema_fb.TensorType has no INT8"
    return None


def tflite_schema() -> TFLiteSchema:
    """TFLite's flatbuffer schema and reader, from the `tflite-micro` package (`export/flatbuffer.py`)."""
    require("tflm-flatbuffer-schema")
    return _tflite_schema()


# --- tflm-compression --------------------------------------------------------------------------


@dataclass(frozen=True)
class TFLMCompression:
    """TFLite Micro's model compression and flatbuffer alignment, from the `tflite-micro` package's tools."""

    compress: Callable[[bytes, list], bytearray]  # (model, specs) -> the model with DECODE ops, aligned
    lut: Callable[[int, int, int], Any]  # (tensor, index bits, channel axis) -> a spec.Tensor of subgraph 0
    align: Callable[[str, str], None]  # (in path, out path): re-packed with the schema's buffer alignment


def _tflm_compression() -> TFLMCompression:
    from tflite_micro.tensorflow.lite.micro.compression import compress, spec
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    def lut(tensor: int, bits: int, axis: int):
        return spec.Tensor(0, tensor, [spec.LookUpTableCompression(bits, spec.PerChannel(axis))])

    return TFLMCompression(compress, lut, tflite_flatbuffer_align_wrapper.align_tflite_model)


def _probe_tflm_compression() -> str | None:
    t = _tflm_compression()
    if not callable(t.compress) or not callable(t.align):
        return "tflite_micro's compress or align_tflite_model is not a function"
    made = t.lut(3, 4, 0)
    method = made.compression[0]
    if (made.subgraph, made.tensor, method.index_bitwidth, method.mode.axis) != (0, 3, 4, 0):
        return "tflite_micro's compression spec (Tensor, LookUpTableCompression, PerChannel) changed its fields"
    return None


def tflm_compression() -> TFLMCompression:
    """TFLite Micro's look-up-table compression and aligner (`export/flash.py`)."""
    require("tflm-compression")
    return _tflm_compression()


REGISTRY: dict[str, Workaround] = {w.name: w for w in (
    Workaround("keras-tuner-prints", "keras-tuner", KERAS_TUNER,
               "Keras Tuner prints every failed trial's traceback (keras_tuner.src.config.DEBUG) and, in "
               "conditions.Parent.to_proto, a debug print of each conditional value",
               _probe_prints, fallback="Keras Tuner's prints stay on (tracebacks and bare numbers on stdout)"),
    Workaround("trial-tensorboard", "keras", KERAS,
               "Keras' TensorBoard callback calls tf.summary.scalar per metric after every batch, even at "
               "update_freq='epoch'",
               _probe_tensorboard, fallback="trials log with Keras' own TensorBoard callback, per-batch work included"),
    Workaround("custom-gradient-registry", "tensorflow", TENSORFLOW,
               "Keras 3's optimizer registers a custom gradient in TensorFlow's global gradient registry for every "
               "traced train step and never removes it (keras-team/keras#21090)",
               _probe_custom_gradients,
               fallback="each trained model's graphs stay in memory (a train-step graph a trial: a long search "
                        "may run out of memory)"),
    Workaround("frozen-heap", "keras-tuner", KERAS_TUNER,
               "Keras Tuner runs gc.collect() before every trial, walking the whole TensorFlow heap",
               _probe_gc_freeze, fallback="the search runs without freezing the heap (a little slower a trial)"),
    Workaround("hyperband-promotion", "keras-tuner", KERAS_TUNER,
               "--tuner pareto promotes by Pareto rank through Keras Tuner's HyperbandOracle, which chooses whom "
               "to promote inline by trial.score, with no hook (keras-team/keras-tuner#556, #641)",
               _probe_promotion, fallback=None),
    Workaround("hyperband-draws", "keras-tuner", KERAS_TUNER,
               "--tuner pareto starts new trials from mutations of the front, through Keras Tuner's HyperbandOracle, "
               "which draws each new trial with its private _random_values and has no hook for a proposal",
               _probe_draws, fallback="new trials are Keras Tuner's uniform draws only (no mutations of the front)"),
    Workaround("hyperband-brackets", "keras-tuner", KERAS_TUNER,
               "--tuner pareto ranks each Hyperband round's trials, which HyperbandOracle keeps only in its "
               "private _brackets",
               _probe_brackets, fallback=None),
    Workaround("hyperband-max-trials", "keras-tuner", KERAS_TUNER,
               "Keras Tuner's HyperbandOracle takes no max_trials; --max-trials sets it on the oracle once made",
               _probe_max_trials, fallback=None),
    Workaround("tuner-init-with-oracle", "keras-tuner", KERAS_TUNER,
               "the search's Hyperband tuners bring their own oracle, so they call keras_tuner.Tuner.__init__ "
               "and skip Hyperband's, which makes a plain one",
               _probe_tuner_init, fallback=None),
    Workaround("build-hypermodel-hook", "keras-tuner", KERAS_TUNER,
               "a promoted Hyperband trial gets Adam afresh in Keras Tuner's private _build_hypermodel hook, "
               "after Hyperband loaded its parent's weights",
               _probe_build_hook, fallback="promoted Hyperband trials keep their parent's Adam state"),
    Workaround("keras-tuner-chief", "keras-tuner", KERAS_TUNER,
               "the distributed chief serves Keras Tuner's gRPC OracleServicer (keras_tuner.src.distribute) with a "
               "loop of its own, since Keras Tuner's waits for every worker it has ever seen",
               _probe_chief, fallback=None),
    Workaround("pcqat-per-layer-quantizers", "tensorflow-model-optimization", TFMOT,
               "tfmot's PCQAT registry hands one weight quantizer to every Conv2D, and the first dense conv turns "
               "sparsity preservation off for all of them",
               _probe_pcqat, fallback=None),
    Workaround("tfmot-experimental-clustering", "tensorflow-model-optimization", TFMOT,
               "tfmot's public API has no sparsity-preserving clustering: its PCQAT tutorial imports cluster_weights "
               "from tensorflow_model_optimization.python.core.clustering.keras.experimental",
               _probe_experimental_clustering, fallback=None),
    Workaround("fused-batch-norm", "keras", KERAS,
               "Keras 3 trains batch norm as separate ops, not TensorFlow's fused kernel (slower: docs/performance.md)",
               _probe_fused_bn, fallback="models train with Keras' own BatchNormalization (slower, same results)"),
    Workaround("tflm-flatbuffer-schema", "tflite-micro", TFLITE_MICRO,
               "the export reads each .tflite file's ops and kernels with the flatbuffer schema that tflite-micro "
               "carries (tflite_micro.runtime.schema_fb), which it does not document",
               _probe_tflite_schema, fallback=None),
    Workaround("tflm-compression", "tflite-micro", TFLITE_MICRO,
               "the flash form is written with tflite-micro's compression tool and flatbuffer aligner "
               "(tflite_micro.tensorflow.lite.micro.compression.compress, tools.tflite_flatbuffer_align_wrapper), "
               "which the package carries but does not document as its API",
               _probe_tflm_compression, fallback=None),
)}
