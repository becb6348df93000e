"""Which Keras Tuner runs a search: each `--tuner` name's tuner class and oracle, made for a run directory."""

from __future__ import annotations

from pathlib import Path

import keras_tuner

from mnist_opt import runtime, workarounds
from mnist_opt.tuning import oracles, train
from mnist_opt.tuning.config import TuneConfig
from mnist_opt.tuning.hypermodel import CNNHyperModel, sample
from mnist_opt.tuning.recorder import FreshOptimizer, TrialRecorder
from mnist_opt.tuning import limits

HYPERBAND_FACTOR = 3  # keeps the best third of each round: Hyperband's usual setting


TUNERS = {  # how each tuner runs a trial, and the oracle that chooses them
    "hyperband": (keras_tuner.Hyperband, oracles.HyperbandOracle),
    "pareto": (keras_tuner.Hyperband, oracles.ParetoHyperbandOracle),  # Hyperband promoting by Pareto rank
    "random": (keras_tuner.Tuner, oracles.RandomSearchOracle),
    "bayesian": (keras_tuner.Tuner, oracles.BayesianOptimizationOracle),
}


def require_workarounds(cfg: TuneConfig) -> None:
    """Probe every workaround a search with `cfg` leans on (mnist_opt/workarounds.py), before any trial runs:
    one a changed library no longer fits either warns once and falls back, or stops here with what to install."""
    names = ["keras-tuner-prints", "build-hypermodel-hook", "trial-tensorboard", "custom-gradient-registry",
             "frozen-heap", "fused-batch-norm"]
    if cfg.hyperband():
        names.append("tuner-init-with-oracle")
        if cfg.max_trials:
            names.append("hyperband-max-trials")
    if cfg.tuner == "pareto":
        names += ["hyperband-promotion", "hyperband-brackets", "hyperband-draws"]
    for name in names:
        workarounds.require(name)


def make_tuner(cfg: TuneConfig, space, run_dir: Path, measures: limits.Measures | None = None):
    require_workarounds(cfg)
    workarounds.quiet_keras_tuner()  # failures go to trials.json and one line each, not tracebacks
    base, oracle_class = TUNERS[cfg.tuner]
    recorder = (TrialRecorder, FreshOptimizer) if workarounds.require("build-hypermodel-hook") else (TrialRecorder,)
    cls = type(f"Recording{base.__name__}", (*recorder, base), {})
    starts = space.starts if cfg.starts else ()
    kwargs = dict(
        objective=keras_tuner.Objective("val_accuracy", "max"),
        # Keras Tuner treats seed 0 as "no seed" and draws a random one: shift ours off zero.
        seed=cfg.seed % (2**31 - 1) + 1,
        max_consecutive_failed_trials=10**9,  # our own rule above ignores skipped trials
        starts=starts,
    )
    if cfg.tuner == "pareto":  # each trial's costs, known before it trains, are its other objectives
        kwargs["costs"] = lambda hp: costs(sample(space, hp.copy()), cfg, measures)
        kwargs["fits"] = lambda hp: limits.over(sample(space, hp.copy()), cfg, measures) is None
        # The arena and MAC limits leave few designs: new trials are drawn until one fits (--max-kb alone, as before).
        kwargs["steer"] = cfg.max_arena_kb is not None or cfg.max_macs is not None
    if cfg.hyperband():
        # With --max-trials, brackets repeat until that many trials ran; so do --tuner pareto's under --search-minutes
        # (small designs finish an iteration in a fraction of it); else one Hyperband iteration.
        repeat = cfg.max_trials or (cfg.tuner == "pareto" and cfg.search_minutes is not None)
        oracle = oracle_class(max_epochs=cfg.max_epochs, factor=HYPERBAND_FACTOR, **kwargs,
                              hyperband_iterations=None if repeat else 1)
        if cfg.max_trials:
            workarounds.set_max_trials(oracle, cfg.max_trials)
    else:
        oracle = oracle_class(max_trials=cfg.trials_limit(), **kwargs)
    hypermodel = CNNHyperModel(space, train.STEPS_PER_EXECUTION, runtime.training_dtype())
    return cls(oracle=oracle, starts=starts, hypermodel=hypermodel, directory=str(run_dir), project_name="tuner",
               overwrite=False)


def costs(values: dict, cfg: TuneConfig, measures: limits.Measures | None) -> tuple[float, ...]:
    """A design's cost objectives for --tuner pareto, in `cfg.objectives`' order after accuracy."""
    return tuple(limits.estimated_flash(values, cfg) if o == "flash" else measures.arena_bytes(values)
                 for o in cfg.objectives[1:])
