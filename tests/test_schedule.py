"""The asynchronous Hyperband oracle, driven trial by trial without training anything."""

from collections import Counter

import keras_tuner
import pytest

from tuning.schedule import AsyncHyperbandOracle


def _oracle(tmp_path, cls=AsyncHyperbandOracle, name="p", **kw):
    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = cls(objective=keras_tuner.Objective("score", "max"), max_epochs=9, factor=3, hyperparameters=hp,
                 seed=7, max_consecutive_failed_trials=10**9, **kw)  # as the project's tuners
    oracle._set_project_dir(str(tmp_path), name)
    return oracle


def _score(values: dict) -> float:
    """A model's score: its x, a little higher for every epoch it trained."""
    return values["x"] + values["tuner/epochs"] / 100


def _drive(oracle, limit: int = 100) -> list[dict]:
    """Run the oracle's search one trial at a time, as one tuner does; each trial's values, in order."""
    ran = []
    for _ in range(limit):
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            return ran
        values = trial.hyperparameters.values
        oracle.update_trial(trial.trial_id, {"score": _score(values)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        ran.append({"id": trial.trial_id, **values})
    raise AssertionError(f"no end after {limit} trials")


def _shape(trials: list[dict]) -> Counter:
    return Counter((t["tuner/bracket"], t["tuner/round"], t["tuner/initial_epoch"], t["tuner/epochs"]) for t in trials)


def test_same_rounds_and_epochs_as_keras_tuners_hyperband(tmp_path):
    ours = _drive(_oracle(tmp_path))
    theirs = _drive(_oracle(tmp_path, keras_tuner.oracles.HyperbandOracle, name="kt"))
    assert len(ours) == len(theirs) == 23  # max_epochs 9, factor 3: brackets of 9/3/1, 5/2 and 3 trials
    assert _shape(ours) == _shape(theirs)
    assert sum(t["tuner/epochs"] - t["tuner/initial_epoch"] for t in ours) == 75


def test_promotes_as_soon_as_a_trial_ranks_in_the_top_third(tmp_path):
    trials = _drive(_oracle(tmp_path))
    rounds = [t["tuner/round"] for t in trials]
    # Bracket 2 (1, 3 and 9 epochs): a promotion after every third first-round trial, then the top.
    # Keras Tuner's Hyperband runs all nine first-round trials before promoting any.
    assert rounds[:13] == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 2]
    # Bracket 1 (3 and 9 epochs, 5 then 2 trials): one after three, the last once the round is whole.
    assert rounds[13:20] == [0, 0, 0, 1, 0, 0, 1] and rounds[20:] == [0, 0, 0]
    by_id = {t["id"]: t for t in trials}
    first = trials[3]
    assert first["tuner/trial_id"] == max(trials[:3], key=lambda t: t["x"])["id"]
    assert (first["tuner/initial_epoch"], first["tuner/epochs"]) == (1, 3)
    for t in trials:  # a promotion carries the model's values on, and starts where its model stopped
        if "tuner/trial_id" in t:
            past = by_id[t["tuner/trial_id"]]
            assert t["x"] == past["x"] and t["tuner/initial_epoch"] == past["tuner/epochs"]


def test_only_trials_in_the_top_share_so_far_are_promoted(tmp_path):
    trials = _drive(_oracle(tmp_path))
    for i, t in enumerate(trials):
        if "tuner/trial_id" not in t or t["tuner/bracket"] != 2:
            continue
        # Every promotion in bracket 2's 9-trial first round is within the best third of that round so far.
        if t["tuner/round"] == 1:
            so_far = sorted((p["x"] for p in trials[:i] if p["tuner/bracket"] == 2 and p["tuner/round"] == 0),
                            reverse=True)
            rank = so_far.index(next(p["x"] for p in trials if p["id"] == t["tuner/trial_id"]))
            assert rank < len(so_far) // 3
    # And over the whole round, the three promoted are Keras Tuner's three: the round's best.
    first_round = sorted((t for t in trials if (t["tuner/bracket"], t["tuner/round"]) == (2, 0)),
                         key=lambda t: t["x"], reverse=True)
    promoted = {t["tuner/trial_id"] for t in trials if (t["tuner/bracket"], t["tuner/round"]) == (2, 1)}
    assert promoted <= {t["id"] for t in first_round}


def test_no_promotion_while_the_deciding_trials_still_run(tmp_path):
    oracle = _oracle(tmp_path)
    for _ in range(2):
        trial = oracle.create_trial("a")
        oracle.update_trial(trial.trial_id, {"score": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    running = oracle.create_trial("a")  # the third first-round trial, not finished
    nxt = oracle.create_trial("b")  # another tuner asks meanwhile: a new first-round trial, no promotion
    assert running.hyperparameters.values["tuner/round"] == 0 and nxt.hyperparameters.values["tuner/round"] == 0


def test_a_search_killed_mid_trial_resumes_the_same_schedule(tmp_path):
    whole = _drive(_oracle(tmp_path, name="whole"))
    first, done = _oracle(tmp_path, name="split"), []
    for _ in range(11):  # up to bracket 2's second promotion
        trial = first.create_trial("tuner0")
        first.update_trial(trial.trial_id, {"score": _score(trial.hyperparameters.values)})
        trial.status = "COMPLETED"
        first.end_trial(trial)
        done.append({"id": trial.trial_id, **trial.hyperparameters.values})
    killed = first.create_trial("tuner0")  # the process dies during this trial
    again = _oracle(tmp_path, name="split")
    again.reload()  # what a resumed tuner does: trials and state from the project directory
    rest = _drive(again)
    assert rest[0]["id"] == killed.trial_id  # the interrupted trial runs again, with the same values
    strip = lambda ts: [{k: v for k, v in t.items() if k != "id"} for t in ts]  # noqa: E731
    assert strip(done + rest) == strip(whole)


@pytest.mark.parametrize("failed", [1, 5])
def test_failed_trials_do_not_stall_the_search(tmp_path, failed):
    """A skipped (over-budget) or failed first-round trial is never promoted, and the search still ends."""
    oracle, ran = _oracle(tmp_path), []
    for n in range(100):
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        values = trial.hyperparameters.values
        if n < failed:
            trial.status = "FAILED"
        else:
            oracle.update_trial(trial.trial_id, {"score": _score(values)})
            trial.status = "COMPLETED"
        oracle.end_trial(trial)
        ran.append({"id": trial.trial_id, "status": trial.status, **values})
    assert trial.status == "STOPPED"
    failed_ids = {t["id"] for t in ran if t["status"] == "FAILED"}
    assert len(failed_ids) == failed
    assert not failed_ids & {t.get("tuner/trial_id") for t in ran}
