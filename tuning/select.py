"""Which trial wins: validation accuracy, then fewer parameters, among those that can be retrained in time.

Selection reads validation accuracy only; the test split is for `report` and `evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable

from mnist_opt import data
from mnist_opt.tuning import train
from mnist_opt.tuning.config import TuneConfig

MIN_RETRAIN_SHARE = 0.5  # of --final-epochs that a winner must fit in --final-minutes

Log = Callable[[str], None]


def merit(record: dict) -> tuple:
    """How trials rank: validation accuracy, then fewer parameters."""
    return record["val_accuracy"], -record["params"]


def winner(completed: list[dict], cfg: TuneConfig, minutes: Callable[[dict], float],
           log: Log = lambda line: None) -> dict:
    """The best completed trial (validation accuracy, then fewer parameters) that fits --final-minutes.

    `minutes(record)` estimates a trial's retrain; it is asked in rank order, only until one fits.
    A trial fits when at least MIN_RETRAIN_SHARE of --final-epochs fit in the budget: the retrain
    stops in time by itself, and early stopping rarely uses the last epochs. Passing over every
    trial a little too slow for all the epochs once took a far weaker model (docs/experiments.md).
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

    Timed at the retrain's batch size, not taken from the trial: the speed per image depends on the
    batch size, and an estimate from the trials' batches once passed the winner over for a far
    weaker model (docs/experiments.md).
    """
    per_image = train.seconds_per_image(record["hyperparameters"], split, cfg.batch_size)
    return per_image * len(split.y_train) * cfg.final_epochs / 60
