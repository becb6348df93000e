"""Neighbours of the front: one hyperparameter moved, every value still in the space, deterministic."""

import random

import keras_tuner
import pytest

from mnist_opt.tuning import mutate
from mnist_opt.tuning.hypermodel import sample
from mnist_opt.tuning.oracles import ParetoHyperbandOracle
from mnist_opt.tuning.size import estimate_flash_bytes
from mnist_opt.tuning.space import load


def _declared(space_name: str = "frontier") -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    sample(load(space_name), hp)
    return hp


def _legal(hp: keras_tuner.HyperParameters, values: dict) -> bool:
    """Every value is one its parameter allows, and exactly the active parameters have one."""
    filled = keras_tuner.HyperParameters()
    for p in hp.space:
        filled.merge([p])
        if filled.is_active(p):
            if p.name not in values:
                return False
            filled.values[p.name] = values[p.name]
            kinds = keras_tuner.engine.hyperparameters
            if isinstance(p, kinds.Choice) and values[p.name] not in p.values:
                return False
            if isinstance(p, (kinds.Int, kinds.Float)) and not p.min_value <= values[p.name] <= p.max_value:
                return False
    return set(filled.values) == set(values)


@pytest.mark.parametrize("seed", range(20))
def test_a_neighbour_moves_one_free_parameter_and_stays_in_the_space(seed):
    hp = _declared()
    parent = dict(load("frontier").starts[seed % 5])
    start = keras_tuner.HyperParameters()
    for p in hp.space:  # the start as the oracle holds it: every active parameter set
        start.merge([p])
        if start.is_active(p):
            start.values[p.name] = parent.get(p.name, p.default)
    child = mutate.neighbour(dict(start.values) | {"tuner/epochs": 9}, hp, random.Random(seed))
    assert _legal(hp, child) and "tuner/epochs" not in child
    changed = {k for k in set(child) | set(start.values) if child.get(k) != start.values.get(k)}
    assert len(changed) >= 1
    if "conv_blocks" not in changed:  # a block more or fewer adds or drops its filters too
        assert len(changed) == 1, changed
    else:
        assert changed - {"conv_blocks"} <= {f"filters_{b}" for b in range(3)}
        for b in range(child["conv_blocks"]):
            if f"filters_{b}" not in start.values:  # a new block takes the filters of the one before it
                assert child[f"filters_{b}"] == child[f"filters_{b - 1}"]
    assert mutate.neighbour(dict(start.values), hp, random.Random(seed)) == child  # the same seed, the same child


def test_steps_go_to_the_next_choice_and_turn_back_at_an_end():
    hp = keras_tuner.HyperParameters()
    hp.Choice("f", [8, 16, 32])
    (choice,) = hp.space
    rng = random.Random(0)
    assert {mutate.step(choice, 16, rng) for _ in range(50)} == {8, 32}
    assert {mutate.step(choice, 8, rng) for _ in range(20)} == {16}
    hp.Float("lr", 1e-3, 1e-2, sampling="log")
    lr = hp.space[1]
    assert all(1e-3 <= mutate.step(lr, 5e-3, rng) <= 1e-2 for _ in range(50))


def test_the_pareto_oracle_proposes_neighbours_of_its_front_within_the_size_limit(tmp_path):
    space = load("frontier")
    hp = _declared()
    size = lambda h: estimate_flash_bytes(sample(space, h.copy()), 16)  # noqa: E731
    oracle = ParetoHyperbandOracle(objective=keras_tuner.Objective("val_accuracy", "max"), hyperparameters=hp,
                                   max_epochs=3, seed=5, costs=lambda h: (size(h),),
                                   fits=lambda h: size(h) <= 20 * 1024)
    oracle._set_project_dir(str(tmp_path), "mutate")
    assert oracle.mutant() is None  # no front yet: Hyperband's own draw
    for score in (0.97, 0.98, 0.99):
        trial = oracle.create_trial("t")
        oracle.update_trial(trial.trial_id, {"val_accuracy": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    front = [t.hyperparameters.values for t in oracle.front()]
    assert front
    proposals = [v for oracle.attempt in range(40) if (v := oracle.mutant()) is not None]
    assert len(proposals) >= 15  # most are mutations (MUTATION_SHARE), some over the limit are dropped
    for values in proposals:
        assert _legal(hp, values)
        h = hp.copy()
        h.values = dict(values)
        assert size(h) <= 20 * 1024
        assert any(sum(values.get(k) != f.get(k) for k in set(values) | set(f) if not k.startswith("tuner/")) <= 4
                   for f in front)  # one step from a member of the front (a block's filters come with it)
