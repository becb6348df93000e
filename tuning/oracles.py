"""Which trials run: Keras Tuner's oracles, with the space's starting points first.

A search space may declare starting points (`[[start]]` in its file): designs known to
work. Trial n, for n below their count, is starting point n; after them each oracle runs
its own schedule, drawing what its seed gives it. A Hyperband starting point trains for
max_epochs, as a model of Hyperband's last bracket does, and is never promoted. The trial
ids say which trials were starting points, so a resumed search neither repeats nor skips one.
"""

from __future__ import annotations

from collections.abc import Callable

import keras_tuner

from mnist_opt import workarounds
from mnist_opt.tuning import pareto


class StartsFirst:
    """Oracle mixin: the first trials are `starts`, then the oracle's own."""

    def __init__(self, *args, starts: tuple[dict, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.starts = tuple(starts)

    def populate_space(self, trial_id):
        n = len(self.trials)  # the trials created so far; an interrupted one is retried, not counted again
        if n < len(self.starts):
            return {"status": "RUNNING", "values": self.start_values(dict(self.starts[n]))}
        return super().populate_space(trial_id)

    def start_values(self, values: dict) -> dict:
        return values


class HyperbandOracle(StartsFirst, keras_tuner.oracles.HyperbandOracle):
    def start_values(self, values: dict) -> dict:
        return {**values, "tuner/epochs": self.max_epochs, "tuner/initial_epoch": 0}


class ParetoHyperbandOracle(HyperbandOracle):
    """Hyperband for the accuracy-size front (MO-ASHA, Schmucker et al. 2021).

    Brackets, rounds and epochs are Hyperband's; only the choice of whom a round promotes differs:
    by non-dominated rank of (score, size) among the round's finished trials, then by crowding
    distance, instead of by score alone. So a small model that is the best of its size goes on
    to more epochs, where plain Hyperband would drop it for a larger one that scores a little more
    in one epoch. `size(hyperparameters)` is a trial's estimated int8 bytes, known before it trains.
    The order is computed from the trials alone, so a resumed search promotes as an uninterrupted one.
    """

    def __init__(self, *args, size: Callable[[keras_tuner.HyperParameters], float], **kwargs):
        super().__init__(*args, **kwargs)
        self.size = size

    def populate_space(self, trial_id):
        with workarounds.hyperband_promotes_by(self.promotion_keys()):
            return super().populate_space(trial_id)

    def promotion_keys(self) -> dict:
        """Each trial a round could promote now -> its place in MO-ASHA's order, as a score (higher first).

        The order is over all the round's finished trials, those promoted already included, as NSGA-II
        selects a whole population at once: re-ranked after each promotion, the two ends of the front
        tie at an infinite crowding distance again and again, and the same end kept winning.
        """
        keys = {}
        for done, taken in workarounds.hyperband_rounds(self):
            finished = [t for trial_id in done
                        if (t := self.trials.get(trial_id)) is not None and t.status == "COMPLETED"]
            placed = pareto.order([(t.score, self.size(t.hyperparameters)) for t in finished])
            for place, i in enumerate(placed):
                if finished[i].trial_id not in taken:
                    keys[finished[i]] = -place
        return keys


class RandomSearchOracle(StartsFirst, keras_tuner.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(StartsFirst, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


def is_start(trial_id: str, starts: tuple[dict, ...]) -> bool:
    return int(trial_id) < len(starts)
