"""Which trials run: Keras Tuner's oracles, with the space's starting points first.

A search space may declare starting points (`[[start]]` in its file): designs known to
work. Trial n, for n below their count, is starting point n; after them each oracle runs
its own schedule, drawing what its seed gives it. A Hyperband starting point trains for
max_epochs, as a model of Hyperband's last bracket does, and is never promoted. The trial
ids say which trials were starting points, so a resumed search neither repeats nor skips one.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import keras_tuner

from mnist_opt import workarounds
from mnist_opt.tuning import mutate, pareto

MUTATION_SHARE = 0.75  # of --tuner pareto's new trials: neighbours of the front; the others uniform draws
STEER_ATTEMPTS = 200  # draws tried for one new trial under tight limits before Hyperband's own is taken


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
    by non-dominated rank of (score, costs) among the round's finished trials, then by crowding
    distance, instead of by score alone. So a small model that is the best of its size goes on
    to more epochs, where plain Hyperband would drop it for a larger one that scores a little more
    in one epoch. `costs(hyperparameters)` is a trial's estimated flash bytes (and, with the arena objective,
    its TensorFlow Lite Micro arena), known before it trains; `fits(hyperparameters)`, whether it meets the
    search's limits. Most new trials are neighbours of the front's members (`mutant`), the rest uniform draws;
    with `steer`, draws that do not fit are made again (up to STEER_ATTEMPTS), so tight limits do not leave
    Hyperband's rounds full of skipped trials.
    The order is computed from the trials alone, so a resumed search promotes as an uninterrupted one.
    """

    attempt = 0  # `mutant`'s proposals for the trial being made: each has a seed of its own
    mutation_share = MUTATION_SHARE

    def __init__(self, *args, costs: Callable[[keras_tuner.HyperParameters], tuple],
                 fits: Callable[[keras_tuner.HyperParameters], bool] = lambda hp: True, steer: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.costs, self.fits, self.steer = costs, fits, steer

    def populate_space(self, trial_id):
        self.attempt = 0
        with workarounds.hyperband_promotes_by(self.promotion_keys()), workarounds.hyperband_draws(self, self.mutant):
            return super().populate_space(trial_id)

    def front(self) -> list:
        """The completed trials on the front of (score, size), oldest first (by id: Keras Tuner reloads its
        trials in the order the file system lists them, and `mutant` picks by position)."""
        done = sorted((t for t in self.trials.values() if t.status == "COMPLETED" and t.score is not None),
                      key=lambda t: int(t.trial_id))
        rank = pareto.ranks([(t.score, *self.costs(t.hyperparameters)) for t in done])
        return [t for t, r in zip(done, rank) if r == 0]

    def mutant(self) -> dict | None:
        """A new trial's values: for `mutation_share` of them a neighbour (`tuning.mutate`) of a random member
        of the front that fits the limits, else None (Hyperband's uniform draw); with `steer`, a uniform draw
        that fits instead of Hyperband's. Seeded by the search's seed and the number of trials made, so that a
        resumed search draws as an uninterrupted one."""
        rng = random.Random(f"{self.seed}:{len(self.trials)}:{self.attempt}")
        self.attempt += 1
        front = self.front()
        values = None
        if front and rng.random() < self.mutation_share:
            values = mutate.neighbour(rng.choice(front).hyperparameters.values, self.hyperparameters, rng)
            if values is not None and self.fits(self._hp(values)):
                return values
        if not self.steer:
            return None
        for _ in range(STEER_ATTEMPTS):
            values = mutate.draw(self.hyperparameters, rng)
            if self.fits(self._hp(values)):
                return values
        return None

    def _hp(self, values: dict) -> keras_tuner.HyperParameters:
        hp = self.hyperparameters.copy()
        hp.values = dict(values)
        return hp

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
            placed = pareto.order([(t.score, *self.costs(t.hyperparameters)) for t in finished])
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
