"""How a trial is run and recorded: a Keras Tuner mixin over the project's input pipeline, writing trials.json."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.engine import trial as trial_module

from mnist_opt import data, rundir, runio, runtime, workarounds
from mnist_opt.tuning import inputs, limits, oracles, pareto, train
from mnist_opt.tuning.config import TuneConfig
from mnist_opt.tuning.architecture import compile_model
from mnist_opt.tuning.describe import describe
from mnist_opt.tuning.hypermodel import sample
from mnist_opt.tuning.trial import OverBudget, trial_data

MAX_CONSECUTIVE_FAILURES = 5  # a broken setup fails every trial; stop paying for it early
TRIAL_PATIENCE = 2  # epochs without progress before a random/bayesian trial stops

Log = Callable[[str], None]


class StopSearch(Exception):
    """Raised from a trial hook to end the search loop early."""


class TrialRecorder:
    """Tuner mixin: runs each trial on the project's input pipeline and records it.

    Placed before a Keras Tuner class in the MRO (Hyperband, or Tuner itself for random and
    Bayesian search), so that tuner's own way of running a trial is kept as it is.
    """

    def __init__(self, oracle, starts: tuple[dict, ...], **kwargs):
        # The oracle comes made, with the search's starting points (`make_tuner`): the Keras Tuner
        # class adds only how it runs a trial. Its own __init__, which makes a plain oracle, is skipped.
        workarounds.init_tuner(self, oracle, **kwargs)
        self.starts = starts  # the oracle's; a distributed worker's oracle is a client without them

    def setup(self, cfg: TuneConfig, split: data.Split, run_dir: Path, log: Log, trials_path: Path | None = None,
              measures: limits.Measures | None = None):
        self.cfg, self.split, self.run_dir, self.log, self.measures = cfg, split, run_dir, log, measures
        self.trials_path = trials_path or run_dir / rundir.TRIALS  # a distributed worker keeps its own
        self.records = {r["id"]: r for r in runio.read_json(self.trials_path)} if self.trials_path.exists() else {}
        self.errors: dict[str, BaseException] = {}
        self.epochs_run: dict[str, int] = {}
        self.started: dict[str, float] = {}

    @functools.cached_property
    def train(self) -> tuple:
        """The train split as tensors: made once, at the first trial (a distributed chief runs none)."""
        return tf.constant(self.split.x_train), tf.constant(self.split.y_train)

    def values(self, hp: keras_tuner.HyperParameters) -> dict:
        return sample(self.hypermodel.space, hp.copy())

    def run_trial(self, trial, *args, **kwargs):
        values = self.values(trial.hyperparameters)
        try:
            if reason := limits.over(values, self.cfg, self.measures):
                raise OverBudget(reason)
            # Each trial's weights and batches depend only on the seed and its id,
            # so a resumed search retrains an interrupted trial exactly.
            keras.utils.set_random_seed(self.cfg.seed + int(trial.trial_id))
            train_ds, steps = trial_data(self.train, self.cfg, values, self.cfg.seed + int(trial.trial_id))
            val_ds = inputs.dataset(self.split.x_val, self.split.y_val, 1000, classes=self.split.info.classes)
            callbacks = [
                train.StopOnNaN(),
                runtime.stop_on_interrupt(keras),
                workarounds.trial_tensorboard(str(self.run_dir / "tensorboard")),
            ]
            if not self.cfg.hyperband():  # Hyperband stops bad trials itself
                callbacks.append(keras.callbacks.EarlyStopping("val_accuracy", patience=TRIAL_PATIENCE))
            with workarounds.released_custom_gradients():  # else each trial's graphs stay in memory
                histories = super().run_trial(trial, train_ds, validation_data=val_ds, epochs=self.cfg.max_epochs,
                                              steps_per_epoch=steps, callbacks=callbacks, shuffle=False, verbose=0)
            self.epochs_run[trial.trial_id] = len(histories[-1].history["loss"])
            return histories
        except BaseException as exc:
            self.errors[trial.trial_id] = exc
            raise

    def on_trial_begin(self, trial):
        runtime.raise_if_interrupted()
        super().on_trial_begin(trial)
        self.started[trial.trial_id] = time.perf_counter()

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        ended = self.oracle.get_trial(trial.trial_id)  # from the chief, for a distributed worker
        record = self.record(ended, time.perf_counter() - self.started.pop(trial.trial_id))
        self.records[record["id"]] = record
        runio.write_json(self.trials_path, pareto.annotate(list(self.records.values()), self.cfg.objectives))
        self.log(describe(record, len(self.records), self.cfg.trials_limit()))
        recent = [r["status"] for r in self.records.values() if r["status"] != "skipped"]
        if len(recent) >= MAX_CONSECUTIVE_FAILURES and set(recent[-MAX_CONSECUTIVE_FAILURES:]) == {"failed"}:
            raise StopSearch(f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed")
        if reason := self.out_of_time():
            raise StopSearch(reason)

    def out_of_time(self) -> str | None:
        """Why no further trial may start under --search-minutes, or None."""
        spent = sum(r["seconds"] or 0 for r in self.records.values()) / 60
        if self.cfg.search_minutes is not None and spent >= self.cfg.search_minutes:
            return f"the trials took {spent:.1f} min, the --search-minutes budget is {self.cfg.search_minutes:g}"
        return None

    def record(self, trial, seconds: float) -> dict:
        values = self.values(trial.hyperparameters)
        hp = trial.hyperparameters.values
        error = self.errors.pop(trial.trial_id, None)
        if trial.status == trial_module.TrialStatus.COMPLETED:
            status, message = "completed", None
        elif isinstance(error, OverBudget):
            status, message = "skipped", str(error)
        else:
            status = "failed"
            message = (f"{type(error).__name__}: {error}" if error is not None
                       else (trial.message or "unknown error").strip().splitlines()[-1])
        return {
            "id": trial.trial_id,
            "status": status,
            "start": oracles.is_start(trial.trial_id, self.starts),
            "hyperparameters": values,
            "epochs": hp.get("tuner/epochs", self.cfg.max_epochs),
            "val_accuracy": float(trial.score) if status == "completed" else None,
            **limits.figures(values, self.cfg, self.measures),  # params, macs, est_flash_bytes, arena_bytes
            "epochs_run": self.epochs_run.pop(trial.trial_id, None),  # in this trial (Hyperband resumes some)
            "seconds": None if seconds is None else round(seconds, 2),
            "error": message,
            "rss_mib": runtime.rss_mib(),  # resident memory of the process that ran the trial, at its end
        }


class FreshOptimizer:
    """Tuner mixin, after TrialRecorder (`make_tuner`): a promoted Hyperband trial's optimizer starts afresh.

    Keras Tuner's `_build_hypermodel` is a private hook (workaround 'build-hypermodel-hook'): where it
    changed, `make_tuner` leaves this mixin out and promoted trials keep their parent's Adam state.
    """

    def _build_hypermodel(self, hp):
        """A trial's model (Keras Tuner's hook); a promoted Hyperband trial's gets its parent's weights
        there, and Adam afresh here.

        The parent's checkpoint also holds its Adam state, and Keras loads it into the optimizer that
        `compile_model` built. Carried over, it scored lower (docs/experiments.md). Afresh is what a
        promoted trial got before, as it does in Keras Tuner's own Hyperband, where Keras builds the
        optimizer at the first step.
        """
        model = super()._build_hypermodel(hp)
        if "tuner/trial_id" in hp.values:
            compile_model(model, self.values(hp), steps_per_execution=self.hypermodel.steps_per_execution)
        return model
