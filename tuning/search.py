"""The Keras Tuner search of a run directory: run, or resume where a killed one stopped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mnist_opt import data, workarounds
from mnist_opt.tuning import pareto, state
from mnist_opt.tuning.limits import Measures
from mnist_opt.tuning.config import TuneConfig
from mnist_opt.tuning.recorder import StopSearch
from mnist_opt.tuning.trial import epoch_images
from mnist_opt.tuning.tuners import make_tuner

Log = Callable[[str], None]


def search(cfg: TuneConfig, space, split: data.Split, run_dir: Path, log: Log = lambda line: None,
           trials_path: Path | None = None, measures: Measures | None = None) -> list[dict]:
    """Run (or resume) the Keras Tuner search; return every trial's record.

    Trial epochs are `epoch_images` images of the train split; selection uses validation only.
    `measures`: each design's arena, for --max-arena-kb and the arena objective (`tuning.limits`).
    """
    n = epoch_images(cfg, len(split.y_train))
    state.check(run_dir, cfg.hyperband())  # before Keras Tuner reloads it
    tuner = make_tuner(cfg, space, run_dir, measures)
    tuner.setup(cfg, split, run_dir, log, trials_path, measures)
    log(f"search: {cfg.tuner} over space '{space.name}', trial epochs of {n:,} of the {len(split.y_train):,} "
        f"training images, {len(split.y_val):,} validation images; run directory {run_dir}")
    if tuner.records:
        log(f"resuming: {len(tuner.records)} trials already done are kept")
    try:
        if reason := tuner.out_of_time():  # a resumed search whose budget is spent
            raise StopSearch(reason)
        with workarounds.frozen_heap():
            tuner.search(verbose=0)
    except StopSearch as stop:
        log(f"search stopped: {stop}")
    return pareto.annotate(list(tuner.records.values()), cfg.objectives)  # as trials.json has them
