"""How trials are run: the Keras Tuner search, its records, and the final retrain.

`tune` is the whole stage, top to bottom. Everything it writes goes under the
run directory:

    tuner/              Keras Tuner state (what a resumed search reloads)
    tensorboard/        one log directory per trial, with HParams
    trials.json         every trial: status, hyperparameters, val_accuracy, params, pareto_rank, seconds, error, ...
    best_hparams.json   the winner's hyperparameters
    best.keras          the winner, retrained on the whole train split
    config.json         resolved settings, package versions, seed, data hash
"""

from __future__ import annotations

import functools
import hashlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.engine import trial as trial_module

from mnist_opt import rundir, runio, runtime, workarounds
from mnist_opt.errors import RunDirError, SearchFailed
from tuning import data, inputs, oracles, pareto, space as space_module, state, train
from tuning.config import TuneConfig
from tuning.architecture import architecture, build_cnn, compile_model
from tuning.hypermodel import CNNHyperModel, sample
from tuning.size import count_params, estimate_int8_bytes

MAX_CONSECUTIVE_FAILURES = 5  # a broken setup fails every trial; stop paying for it early
HYPERBAND_FACTOR = 3  # keeps the best third of each round: Hyperband's usual setting
TRIAL_PATIENCE = 2  # epochs without progress before a random/bayesian trial stops
MIN_RETRAIN_SHARE = 0.5  # of --final-epochs that a winner must fit in --final-minutes
PACKAGES = ("tensorflow", "keras", "tf-keras", "keras-tuner", "tensorflow-model-optimization",
            "tensorboard", "ai-edge-litert", "tflite-micro", "numpy", "typer")
OUTPUTS = ("tuner", "tensorboard", rundir.TRIALS, rundir.BEST_HPARAMS, rundir.BEST_MODEL, rundir.CONFIG,
           rundir.FRONTIER, "frontier")

Log = Callable[[str], None]


@dataclass(frozen=True)
class TuneResult:
    run_dir: Path
    best: dict  # the best_hparams.json document
    counts: dict  # trials per status


class OverBudget(keras_tuner.errors.FailedTrialError):
    """A model over the parameter budget: skipped before any training."""


class _StopSearch(Exception):
    """Raised from a trial hook to end the search loop early."""


class TrialRecorder:
    """Tuner mixin: runs each trial on the project's input pipeline and records it.

    Placed before a Keras Tuner class in the MRO (Hyperband, or Tuner itself for random and
    Bayesian search), so that tuner's own way of running a trial is kept as it is.
    """

    def __init__(self, oracle, starts: tuple[dict, ...], **kwargs):
        # The oracle comes made, with the search's starting points (`make_tuner`): the Keras Tuner
        # class adds only how it runs a trial. Its own __init__, which makes a plain oracle, is skipped.
        keras_tuner.Tuner.__init__(self, oracle=oracle, **kwargs)
        self.starts = starts  # the oracle's; a distributed worker's oracle is a client without them

    def setup(self, cfg: TuneConfig, split: data.Split, run_dir: Path, log: Log, trials_path: Path | None = None):
        self.cfg, self.split, self.run_dir, self.log = cfg, split, run_dir, log
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
            params = count_params(values)
            if self.cfg.max_params is not None and params > self.cfg.max_params:
                raise OverBudget(f"{params:,} parameters > --max-params {self.cfg.max_params:,}")
            size = estimate_int8_bytes(values)
            if self.cfg.max_kb is not None and size > self.cfg.max_kb * 1024:
                raise OverBudget(f"estimated int8 file {size / 1024:,.1f} KB > --max-kb {self.cfg.max_kb:g}")
            # Each trial's weights and batches depend only on the seed and its id,
            # so a resumed search retrains an interrupted trial exactly.
            keras.utils.set_random_seed(self.cfg.seed + int(trial.trial_id))
            train_ds, steps = trial_data(self.train, self.cfg, values, self.cfg.seed + int(trial.trial_id))
            val_ds = inputs.dataset(self.split.x_val, self.split.y_val, 1000)
            callbacks = [
                train.StopOnNaN(),
                runtime.stop_on_interrupt(keras),
                workarounds.TensorBoard(str(self.run_dir / "tensorboard")),
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

    def _build_hypermodel(self, hp):
        """A trial's model (Keras Tuner's hook); a promoted Hyperband trial's gets its parent's weights
        there, and Adam afresh here.

        The parent's checkpoint also holds its Adam state, and Keras loads it into the optimizer that
        `compile_model` built. Carried over, it scored lower: 21 of 29 promoted trials in five searches
        (2026-11-30), by 0.0008 on average. Afresh is what a promoted trial got before, as it does in
        Keras Tuner's own Hyperband, where Keras builds the optimizer at the first step.
        """
        model = super()._build_hypermodel(hp)
        if "tuner/trial_id" in hp.values:
            compile_model(model, self.values(hp), steps_per_execution=self.hypermodel.steps_per_execution)
        return model

    def on_trial_begin(self, trial):
        runtime.raise_if_interrupted()
        super().on_trial_begin(trial)
        self.started[trial.trial_id] = time.perf_counter()

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        ended = self.oracle.get_trial(trial.trial_id)  # from the chief, for a distributed worker
        record = self.record(ended, time.perf_counter() - self.started.pop(trial.trial_id))
        self.records[record["id"]] = record
        runio.write_json(self.trials_path, pareto.annotate(list(self.records.values())))
        self.log(describe(record, len(self.records), self.cfg.trials_limit()))
        recent = [r["status"] for r in self.records.values() if r["status"] != "skipped"]
        if len(recent) >= MAX_CONSECUTIVE_FAILURES and set(recent[-MAX_CONSECUTIVE_FAILURES:]) == {"failed"}:
            raise _StopSearch(f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed")
        if reason := self.out_of_time():
            raise _StopSearch(reason)

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
            "params": count_params(values),
            "est_int8_bytes": estimate_int8_bytes(values),
            "epochs_run": self.epochs_run.pop(trial.trial_id, None),  # in this trial (Hyperband resumes some)
            "seconds": None if seconds is None else round(seconds, 2),
            "error": message,
            "rss_mib": runtime.rss_mib(),  # resident memory of the process that ran the trial, at its end
        }


TUNERS = {  # how each tuner runs a trial, and the oracle that chooses them
    "hyperband": (keras_tuner.Hyperband, oracles.HyperbandOracle),
    "pareto": (keras_tuner.Hyperband, oracles.ParetoHyperbandOracle),  # Hyperband promoting by Pareto rank
    "random": (keras_tuner.Tuner, oracles.RandomSearchOracle),
    "bayesian": (keras_tuner.Tuner, oracles.BayesianOptimizationOracle),
}


def make_tuner(cfg: TuneConfig, space, run_dir: Path):
    workarounds.quiet_keras_tuner()  # failures go to trials.json and one line each, not tracebacks
    base, oracle_class = TUNERS[cfg.tuner]
    cls = type(f"Recording{base.__name__}", (TrialRecorder, base), {})
    starts = space.starts if cfg.starts else ()
    kwargs = dict(
        objective=keras_tuner.Objective("val_accuracy", "max"),
        # Keras Tuner treats seed 0 as "no seed" and draws a random one: shift ours off zero.
        seed=cfg.seed % (2**31 - 1) + 1,
        max_consecutive_failed_trials=10**9,  # our own rule above ignores skipped trials
        starts=starts,
    )
    if cfg.tuner == "pareto":  # each trial's size, known before it trains, is its second objective
        kwargs["size"] = lambda hp: estimate_int8_bytes(sample(space, hp.copy()))
    if cfg.hyperband():
        # With --max-trials, brackets repeat until that many trials ran; without, one Hyperband iteration.
        oracle = oracle_class(max_epochs=cfg.max_epochs, factor=HYPERBAND_FACTOR, **kwargs,
                              hyperband_iterations=None if cfg.max_trials else 1)
        oracle.max_trials = cfg.max_trials
    else:
        oracle = oracle_class(max_trials=cfg.trials_limit(), **kwargs)
    hypermodel = CNNHyperModel(space, train.STEPS_PER_EXECUTION, runtime.training_dtype())
    return cls(oracle=oracle, starts=starts, hypermodel=hypermodel, directory=str(run_dir), project_name="tuner",
               overwrite=False)


def describe(record: dict, n: int, total: int | None) -> str:
    """One line a person can follow: the trial's id (as in trials.json), progress, result, model in short, time."""
    v = dict(architecture(record["hyperparameters"]), **record["hyperparameters"])
    filters = ",".join(str(v[f"filters_{b}"]) for b in range(v["conv_blocks"]))
    short = (f"blocks={v['conv_blocks']}x{v['convs_per_block']} filters={filters} k={v['kernel_size']} "
             f"stem={v['stem_stride']} sep={int(v['separable'])} 1x1={int(v['transition'])} "
             f"bn={int(v['batch_norm'])} gap={int(v['global_pooling'])} dense={v['dense_units']} "
             f"drop={v['dropout']:.2f} rot={v['rotation']:g} zoom={v['zoom']:g} shift={v['translation']:g} "
             f"lr={v['learning_rate']:.1e}")
    result = (f"val_acc {record['val_accuracy']:.4f}" if record["status"] == "completed"
              else record["status"].upper())
    if record.get("start"):
        short = "starting point: " + short
    where = f"{n}/{total}" if total else str(n)
    line = (f"trial {record['id']} ({where})  {result:<15} params {record['params']:>9,}  "
            f"{record['seconds']:6.1f}s  ep {record['epochs']}  {short}")
    if record["status"] != "completed":
        line += f"\n    {record['error']}"
    return line


def package_versions() -> dict:
    return {name: metadata.version(name) for name in PACKAGES}


def prepare_run_dir(cfg: TuneConfig, settings: dict) -> Path:
    """Make the run directory ready: new, resumed (same settings), or cleared (--overwrite)."""
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir}: exists and is not a directory; "
                          "pass --run-dir with a new or existing directory")
    config_path = run_dir / rundir.CONFIG
    if cfg.overwrite:
        for name in OUTPUTS:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    elif config_path.exists():
        before = runio.read_json(config_path).get("search", {})
        diff = [f"{k}: {before.get(k)!r} -> {settings.get(k)!r}"
                for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k)]
        if diff:
            raise RunDirError(f"run directory {run_dir} holds a search with other settings ("
                              + "; ".join(diff) + "); pass --overwrite to start it again, "
                              "or choose a new --run-dir")
    runio.check_writable(run_dir)
    return run_dir


def search(cfg: TuneConfig, space, split: data.Split, run_dir: Path, log: Log = lambda line: None,
           trials_path: Path | None = None) -> list[dict]:
    """Run (or resume) the Keras Tuner search; return every trial's record.

    Trial epochs are `epoch_images` images of the train split; selection uses validation only.
    """
    n = epoch_images(cfg, len(split.y_train))
    state.check(run_dir, cfg.hyperband())  # before Keras Tuner reloads it
    tuner = make_tuner(cfg, space, run_dir)
    tuner.setup(cfg, split, run_dir, log, trials_path)
    log(f"search: {cfg.tuner} over space '{space.name}', trial epochs of {n:,} of the {len(split.y_train):,} "
        f"training images, {len(split.y_val):,} validation images; run directory {run_dir}")
    if tuner.records:
        log(f"resuming: {len(tuner.records)} trials already done are kept")
    try:
        if reason := tuner.out_of_time():  # a resumed search whose budget is spent
            raise _StopSearch(reason)
        with workarounds.frozen_heap():
            tuner.search(verbose=0)
    except _StopSearch as stop:
        log(f"search stopped: {stop}")
    return pareto.annotate(list(tuner.records.values()))  # as trials.json has them


def tune(cfg: TuneConfig, log: Log = lambda line: None) -> TuneResult:
    """The tuning stage: search, check the trials, retrain the winner, save."""
    space, split, run_dir = start(cfg)
    records = search(cfg, space, split, run_dir, log)  # resumes where a killed one stopped
    return finish(cfg, space, split, run_dir, records, log)


def start(cfg: TuneConfig, write: bool = True) -> tuple:
    """Inputs first, so that bad input writes nothing; then the run directory (new, resumed or cleared)."""
    space = space_module.load(cfg.space)
    split = data.load_split(cfg.seed, cfg.data)
    precision = runtime.training_dtype() or "float32"  # $MNIST_OPT_PRECISION, checked before anything is written
    settings = dict(cfg.search_settings(), space_sha256=_sha256(space.text), data_sha256=split.content_sha256)
    run_dir = prepare_run_dir(cfg, settings)
    if write:
        runio.write_json(run_dir / rundir.CONFIG, {
            "tune": cfg.to_dict(), "search": settings, "space_path": space.path, "data_source": split.source,
            "precision": precision, "packages": package_versions(),
        })
    return space, split, run_dir


def finish(cfg: TuneConfig, space, split: data.Split, run_dir: Path, records: list[dict], log: Log) -> TuneResult:
    """Check the trials, retrain the winner on the whole train split, save best.keras."""
    # A search with no completed trial has no result.
    counts = {s: sum(r["status"] == s for r in records) for s in ("completed", "failed", "skipped")}
    completed = [r for r in records if r["status"] == "completed"]
    if not completed:
        first = next((r["error"] for r in records if r["error"]), "no trial ran")
        raise SearchFailed(f"no trial completed ({counts['failed']} failed, {counts['skipped']} skipped); "
                           f"first error: {first}")
    top = max(completed, key=merit)
    log(f"search done: {counts['completed']} completed, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"best trial {top['id']} val_accuracy {top['val_accuracy']:.4f}")
    # The records come ranked: search() and the distributed chief annotate them.
    front = sorted((r for r in completed if r["pareto_rank"] == 0), key=lambda r: r["est_int8_bytes"])
    log("Pareto front of val_accuracy and estimated int8 size: " + ", ".join(
        f"trial {r['id']} {r['val_accuracy']:.4f} in {r['est_int8_bytes'] / 1024:.1f} KB" for r in front))
    measured: dict[str, float] = {}  # trial id -> retrain minutes; each trial is timed once

    def estimate(record: dict) -> float:
        if record["id"] not in measured:
            measured[record["id"]] = retrain_minutes(record, cfg, split)
        return measured[record["id"]]

    if cfg.budgets:  # one model per size budget instead of one winner
        from tuning import frontier

        return frontier.finish(cfg, space, split, run_dir, completed, counts, estimate, log)
    (run_dir / rundir.FRONTIER).unlink(missing_ok=True)  # one winner now: no longer a frontier run
    best = winner(completed, cfg, estimate, log)  # top, unless it cannot be retrained in time
    doc = retrain(cfg, space, split, run_dir, best, estimate(best) if cfg.final_minutes is not None else None, log)
    return TuneResult(run_dir, doc, counts)


def retrain(cfg: TuneConfig, space, split: data.Split, out_dir: Path, best: dict, minutes: float | None,
            log: Log) -> dict:
    """Retrain trial `best` on the whole train split with the recipe; save out_dir/best.keras and best_hparams.json.

    `minutes`: the retrain's measured length at --final-epochs (with --final-minutes), which plans its schedule.
    """
    # The schedule is planned for the epochs that fit in --final-minutes: a cosine cut short ends hot.
    epochs = cfg.final_epochs if minutes is None else train.epochs_in(
        cfg.final_minutes, minutes / cfg.final_epochs, cfg.final_epochs)

    # Validation picks the epoch kept.
    log(f"retraining trial {best['id']} on {len(split.y_train):,} images for {epochs} epochs"
        + (f" (what fits in {cfg.final_minutes:g} min)" if cfg.final_minutes is not None else ""))
    model, history = train.train(best["hyperparameters"], split, epochs, cfg.batch_size, cfg.seed, log,
                                 cfg.final_minutes)
    doc = {
        "trial_id": best["id"],
        "hyperparameters": best["hyperparameters"],
        "params": model.count_params(),
        "est_int8_bytes": estimate_int8_bytes(best["hyperparameters"]),
        "search_val_accuracy": best["val_accuracy"],
        "val_accuracy": max(history["val_accuracy"]),
        "epochs_trained": len(history["val_accuracy"]),
        "space": space.name,
    }

    # Save: the model, then the document that says it is finished.
    with runio.atomic_path(out_dir / rundir.BEST_MODEL) as tmp:
        model.save(tmp)
    runio.write_json(out_dir / rundir.BEST_HPARAMS, doc)
    log(f"best model: {out_dir / rundir.BEST_MODEL}  val_accuracy {doc['val_accuracy']:.4f}  params {doc['params']:,}")
    return doc


def merit(record: dict) -> tuple:
    """How trials rank: validation accuracy, then fewer parameters."""
    return record["val_accuracy"], -record["params"]


def winner(completed: list[dict], cfg: TuneConfig, minutes: Callable[[dict], float],
           log: Log = lambda line: None) -> dict:
    """The best completed trial (validation accuracy, then fewer parameters) that fits --final-minutes.

    `minutes(record)` estimates a trial's retrain; it is asked in rank order, only until one fits.
    A trial fits when at least MIN_RETRAIN_SHARE of --final-epochs fit in the budget: the retrain
    stops in time by itself, and early stopping rarely uses the last epochs. Passing over every
    trial a little too slow for all the epochs once took a far weaker model (0.964 for 0.987).
    """
    ranked = sorted(completed, key=merit, reverse=True)
    if cfg.final_minutes is None:
        return ranked[0]
    fits = lambda m: m * MIN_RETRAIN_SHARE <= cfg.final_minutes  # noqa: E731
    first, first_minutes = ranked[0], minutes(ranked[0])
    if fits(first_minutes):
        return first
    for chosen in ranked[1:]:
        if fits(chosen_minutes := minutes(chosen)):
            epochs = cfg.final_epochs * cfg.final_minutes / first_minutes
            log(f"trial {first['id']} would take ~{first_minutes:.1f} min to retrain, {epochs:.1f} of "
                f"{cfg.final_epochs} epochs in --final-minutes {cfg.final_minutes:g}; taking trial {chosen['id']} "
                f"(val_accuracy {chosen['val_accuracy']:.4f}, ~{chosen_minutes:.1f} min)")
            return chosen
    return first  # nothing fits: the retrain's own time limit still holds


def retrain_minutes(record: dict, cfg: TuneConfig, split: data.Split) -> float:
    """A trial's model retrained for `cfg.final_epochs` on the whole train split: minutes, measured.

    Timed at the retrain's batch size, not taken from the trial: per image, the standard winner
    trains 1.6x slower in batches of 64 than of 128, and an estimate from trials in batches of 64
    passed it over for a model 1.9 points worse in the search (0.970 for 0.989).
    """
    per_image = train.seconds_per_image(record["hyperparameters"], split, cfg.batch_size)
    return per_image * len(split.y_train) * cfg.final_epochs / 60


def trial_data(arrays: tuple, cfg: TuneConfig, values: dict, seed: int) -> tuple:
    """A trial's training stream from the train split's (images, labels), and its steps per epoch.

    An epoch is `epoch_images` images drawn on through the whole shuffled train split, not one
    fixed subset again and again: as cheap per epoch, but a 9-epoch trial sees twice the whole
    split rather than memorizing 12,000 images (on a fixed subset, trials levelled off near 0.985).
    """
    x, y = arrays
    ds = inputs.stream(x, y, cfg.trial_batch_size, inputs.Augment.from_values(values), seed)
    return ds, train.whole_calls(math.ceil(epoch_images(cfg, len(y)) / cfg.trial_batch_size))


def fit_trial(values: dict, split: data.Split, cfg: TuneConfig, seed: int, epochs: int) -> float:
    """Train one trial outside Keras Tuner, as the tuner trains it: the hypermodel's model and Adam, the trial
    stream of `epoch_images` an epoch, validation after each epoch. Returns the best val_accuracy.

    What another search library's trials run (benchmarks/hypervolume.py), so that only the search differs.
    """
    keras.utils.set_random_seed(seed)
    model = build_cnn(values, dtype=runtime.training_dtype(), fused_bn=True)
    compile_model(model, values, steps_per_execution=train.STEPS_PER_EXECUTION)
    train_ds, steps = trial_data((tf.constant(split.x_train), tf.constant(split.y_train)), cfg, values, seed)
    val_ds = inputs.dataset(split.x_val, split.y_val, 1000)
    with workarounds.released_custom_gradients():
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps,
                            callbacks=[train.StopOnNaN()], shuffle=False, verbose=0)
    return float(max(history.history["val_accuracy"]))


def epoch_images(cfg: TuneConfig, n_train: int) -> int:
    """Images in one trial epoch: --train-subset, at most the whole train split."""
    return min(cfg.train_subset or n_train, n_train)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
