"""Which trials run: Keras Tuner's oracles, with the space's starting points first.

A search space may declare starting points (`[[start]]` in its file): designs known to
work. Trial n, for n below their count, is starting point n; after them each oracle runs
its own schedule, drawing what its seed gives it. A Hyperband starting point trains for
max_epochs, as a model of Hyperband's last bracket does, and is never promoted. The trial
ids say which trials were starting points, so a resumed search neither repeats nor skips one.
"""

from __future__ import annotations

import keras_tuner


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


class RandomSearchOracle(StartsFirst, keras_tuner.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(StartsFirst, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


def is_start(trial_id: str, starts: tuple[dict, ...]) -> bool:
    return int(trial_id) < len(starts)
