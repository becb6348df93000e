"""The oracles with starting points, driven trial by trial without training anything."""

import keras_tuner
import pytest

from mnist_opt.tuning import oracles, pareto

STARTS = ({"x": 0.25}, {"x": 0.75})


def _oracle(tmp_path, cls, name="p", starts=STARTS, **kw):
    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    if issubclass(cls, keras_tuner.oracles.HyperbandOracle):
        kw = dict(max_epochs=9, factor=3, **kw)
    else:
        kw = dict(max_trials=8, **kw)
    if issubclass(cls, oracles.StartsFirst):
        kw["starts"] = starts
    oracle = cls(objective=keras_tuner.Objective("score", "max"), hyperparameters=hp, seed=7,
                 max_consecutive_failed_trials=10**9, **kw)  # as the project's tuners
    oracle._set_project_dir(str(tmp_path), name)
    return oracle


def _run(oracle, trial) -> dict:
    values = trial.hyperparameters.values
    oracle.update_trial(trial.trial_id, {"score": values["x"] + values.get("tuner/epochs", 0) / 100})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return {"id": trial.trial_id, **values}


def _drive(oracle, limit: int = 100) -> list[dict]:
    """Run the oracle's search one trial at a time, as one tuner does; each trial's values, in order."""
    ran = []
    for _ in range(limit):
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            return ran
        ran.append(_run(oracle, trial))
    raise AssertionError(f"no end after {limit} trials")


def _values(trials: list[dict]) -> list[dict]:
    return [{k: v for k, v in t.items() if k != "id"} for t in trials]


def test_hyperband_trains_the_starts_for_max_epochs_then_keras_tuners_schedule(tmp_path):
    ours = _drive(_oracle(tmp_path, oracles.HyperbandOracle))
    theirs = _drive(_oracle(tmp_path, keras_tuner.oracles.HyperbandOracle, name="kt"))
    assert _values(ours[:2]) == [{**s, "tuner/epochs": 9, "tuner/initial_epoch": 0} for s in STARTS]
    # Then Keras Tuner's own Hyperband, trial for trial: the same draws, rounds and promotions.
    assert len(theirs) == 23
    rest = _values(ours[2:])
    for t in rest:
        if "tuner/trial_id" in t:  # promotions name their parent by id, two places on
            parent = t["tuner/trial_id"]
            t["tuner/trial_id"] = f"{int(parent) - 2:0{len(parent)}d}"
    assert rest == _values(theirs)
    # A starting point is never promoted: it already has every epoch.
    assert not {t["id"] for t in ours[:2]} & {t.get("tuner/trial_id") for t in ours}


@pytest.mark.parametrize("cls, plain", [
    (oracles.RandomSearchOracle, keras_tuner.oracles.RandomSearchOracle),
    (oracles.BayesianOptimizationOracle, keras_tuner.oracles.BayesianOptimizationOracle),
])
def test_random_and_bayesian_run_the_starts_first(tmp_path, cls, plain):
    ours = _drive(_oracle(tmp_path, cls))
    assert len(ours) == 8  # max_trials counts the starting points
    assert _values(ours[:2]) == list(STARTS)
    assert all(t["x"] not in (0.25, 0.75) for t in ours[2:])
    if cls is oracles.RandomSearchOracle:  # the draws after them are the seed's, as without starts
        assert _values(ours[2:]) == _values(_drive(_oracle(tmp_path, plain, name="kt")))[:6]


def test_no_starts_is_keras_tuners_oracle(tmp_path):
    ours = _drive(_oracle(tmp_path, oracles.HyperbandOracle, starts=()))
    theirs = _drive(_oracle(tmp_path, keras_tuner.oracles.HyperbandOracle, name="kt"))
    assert _values(ours) == _values(theirs)


@pytest.mark.parametrize("killed_at", [0, 1, 2])  # in the first start, the second, the first drawn trial
def test_a_search_killed_mid_trial_resumes_without_repeating_or_skipping_a_start(tmp_path, killed_at):
    whole = _drive(_oracle(tmp_path, oracles.HyperbandOracle, name="whole"))
    first = _oracle(tmp_path, oracles.HyperbandOracle, name="split")
    done = [_run(first, first.create_trial("tuner0")) for _ in range(killed_at)]
    killed = first.create_trial("tuner0")  # the process dies during this trial
    again = _oracle(tmp_path, oracles.HyperbandOracle, name="split")
    again.reload()  # what a resumed tuner does: trials and state from the project directory
    rest = _drive(again)
    assert rest[0]["id"] == killed.trial_id  # the interrupted trial runs again, with the same values
    assert _values(done + rest) == _values(whole)


def test_is_start(tmp_path):
    assert [oracles.is_start(i, STARTS) for i in ("00", "01", "02", "10")] == [True, True, False, False]
    assert not oracles.is_start("0", ())


def _size(hp) -> float:
    """Models of x near 0.5 are small: above it, a trade-off (larger x scores more and is larger); below it,
    each trial is dominated by the one mirrored above 0.5 (as small, and scoring more)."""
    return 1000 + 10000 * abs(hp["x"] - 0.5)


def _costs(hp) -> tuple:
    return (_size(hp),)


def _rounds(ran: list[dict]) -> dict:
    """(bracket, round) -> the trials run in it."""
    rounds = {}
    for t in ran:
        rounds.setdefault((t["tuner/bracket"], t["tuner/round"]), []).append(t)
    return rounds


def test_pareto_hyperband_promotes_by_rank_and_spread_not_score_alone(tmp_path):
    pareto_oracle = _oracle(tmp_path, oracles.ParetoHyperbandOracle, starts=(), costs=_costs)
    pareto_oracle.mutation_share = 0.0  # Hyperband's own draws, to compare the promotions alone
    ours = _drive(pareto_oracle)
    theirs = _drive(_oracle(tmp_path, keras_tuner.oracles.HyperbandOracle, name="kt"))
    rounds = _rounds(ours)
    promotions = 0
    for (bracket, r), trials in rounds.items():
        if r == 0:
            continue
        pool = rounds[(bracket, r - 1)]
        chosen = {t["tuner/trial_id"] for t in trials}
        points = {t["id"]: (t["x"], _size(t)) for t in pool}  # one round: same epochs, score ~ x
        # No trial left behind dominates one promoted: each was on the front of those left when chosen.
        for kept in chosen:
            assert not any(pareto.dominates(points[o], points[kept]) for o in points if o not in chosen)
        ranks = dict(zip(points, pareto.ranks(list(points.values()))))
        if len(trials) < len(pool):  # and the promoted come from the lowest ranks
            assert max(ranks[i] for i in chosen) <= min(ranks[i] for i in points if i not in chosen)
        # Both ends of the front go on: the smallest model, which Hyperband on score alone drops first.
        if len(trials) >= 2:
            assert {min(points, key=lambda i: points[i][1]), max(points, key=lambda i: points[i][0])} <= chosen
        promotions += len(trials)
    assert promotions > 0
    assert _values([t for t in ours if t["tuner/round"] == 0]) == _values(
        [t for t in theirs if t["tuner/round"] == 0])  # the same draws: only the promotions differ
    assert [t["tuner/trial_id"] for t in ours if "tuner/trial_id" in t] != [
        t["tuner/trial_id"] for t in theirs if "tuner/trial_id" in t]


@pytest.mark.parametrize("killed_at", [3, 12])  # in the first round, and among the promotions
def test_a_killed_pareto_search_resumes_to_the_same_trials_and_front(tmp_path, killed_at):
    make = lambda name: _oracle(tmp_path, oracles.ParetoHyperbandOracle, name=name, costs=_costs)  # noqa: E731
    whole = _drive(make("whole"))
    first = make("split")
    done = [_run(first, first.create_trial("tuner0")) for _ in range(killed_at)]
    first.create_trial("tuner0")  # the process dies during this trial
    again = make("split")
    again.reload()
    rest = _drive(again)
    assert _values(done + rest) == _values(whole)
    front = lambda ran: sorted(t["id"] for t, r in zip(ran, pareto.ranks(  # noqa: E731
        [(t["x"] + t.get("tuner/epochs", 0) / 100, _size(t)) for t in ran])) if r == 0)
    assert front(done + rest) == front(whole)
