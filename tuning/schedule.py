"""Hyperband that promotes as soon as it can: asynchronous successive halving (ASHA).

Keras Tuner's Hyperband starts every first-round trial of a bracket before promoting any: at
the default max_epochs 9 and factor 3, nine one-epoch models train before the first one gets
three epochs, and the first good model comes after a minute. This oracle keeps Hyperband's
brackets, round sizes and epochs, and changes only when a promotion happens: as soon as a round
has finished `factor` more trials, its best not yet promoted moves up, the deepest round first
(the promotion rule of ASHA, Li et al., "A System for Massively Parallel Hyperparameter Tuning",
MLSys 2020, within Hyperband's round sizes). A promoted trial is always within the best 1/factor
of its round so far. Once a round has all its trials and none is running, its best fill whatever
places are left. Each round ends up with as many trials as in Keras Tuner's Hyperband, so a
search has the same trials and epochs, but good models get their epochs early.

Its state is Keras Tuner's (brackets and their rounds), so a resumed or distributed search
works as with `keras_tuner.Hyperband`.
"""

from __future__ import annotations

import keras_tuner
from keras_tuner.engine import tuner as tuner_module


class AsyncHyperbandOracle(keras_tuner.oracles.HyperbandOracle):

    def populate_space(self, trial_id):
        self._remove_completed_brackets()
        for bracket in self._brackets:
            if values := self._promotion(bracket):
                bracket["rounds"][values["tuner/round"]].append({"past_id": values["tuner/trial_id"], "id": trial_id})
                return {"status": "RUNNING", "values": values}
            if len(bracket["rounds"][0]) < self._get_size(bracket["bracket_num"], round_num=0):
                return self._random_trial(trial_id, bracket)
        # Every bracket so far is full or waiting for running trials: as Keras Tuner does.
        if self._current_bracket == 0 and self._current_iteration + 1 == self.hyperband_iterations:
            return {"status": "IDLE"} if self.ongoing_trials else {"status": "STOPPED"}
        self._increment_bracket_num()
        self._start_new_bracket()
        return self._random_trial(trial_id, self._brackets[-1])

    def _promotion(self, bracket) -> dict | None:
        """The values of the next promotion in `bracket`, the deepest round first; None if none is due."""
        num, rounds = bracket["bracket_num"], bracket["rounds"]
        for round_num in range(len(rounds) - 1, 0, -1):
            if best := self._promotable(num, round_num, rounds):
                values = best.hyperparameters.values.copy()
                values.update({
                    "tuner/trial_id": best.trial_id,
                    "tuner/epochs": self._get_epochs(num, round_num),
                    "tuner/initial_epoch": self._get_epochs(num, round_num - 1),
                    "tuner/bracket": num,
                    "tuner/round": round_num,
                })
                return values
        return None

    def _promotable(self, num: int, round_num: int, rounds: list):
        """The best trial of round `round_num - 1` not yet promoted, if round `round_num` is due one; or None.

        Due: it has fewer trials than its share of the previous round's completed ones, or than its
        size once the previous round is whole and nothing in it is still running.
        """
        size, past_size = self._get_size(num, round_num), self._get_size(num, round_num - 1)
        past = [self.trials[info["id"]] for info in rounds[round_num - 1]]
        running = {t.trial_id for t in self.ongoing_trials.values()}
        done = [t for t in past if t.status == "COMPLETED"]
        whole = len(past) == past_size and not any(t.trial_id in running for t in past)
        quota = size if whole else len(done) * size // past_size
        promoted = {info["past_id"] for info in rounds[round_num]}
        if len(promoted) >= quota:
            return None
        ranked = sorted(done, key=lambda t: t.score, reverse=self.objective.direction == "max")
        return next((t for t in ranked if t.trial_id not in promoted), None)


class AsyncHyperband(keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` with `AsyncHyperbandOracle`; the same arguments."""

    def __init__(self, hypermodel=None, objective=None, max_epochs=100, factor=3, hyperband_iterations=1,
                 seed=None, hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, **kwargs):
        oracle = AsyncHyperbandOracle(
            objective, max_epochs=max_epochs, factor=factor, hyperband_iterations=hyperband_iterations, seed=seed,
            hyperparameters=hyperparameters, tune_new_entries=tune_new_entries, allow_new_entries=allow_new_entries,
            max_retries_per_trial=max_retries_per_trial, max_consecutive_failed_trials=max_consecutive_failed_trials)
        tuner_module.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
