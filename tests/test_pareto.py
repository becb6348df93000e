"""Pareto ranks and hypervolume against brute force on random fronts."""

import itertools
import math
import random

import pytest

from mnist_opt.tuning import pareto


def _points(seed: int, n: int = 40) -> list[tuple[float, float]]:
    rng = random.Random(seed)  # coarse values, so that ties on one objective occur
    return [(rng.randint(90, 100) / 100, rng.randint(4, 64) * 1024) for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_rank_zero_is_exactly_the_non_dominated_set(seed):
    points = _points(seed)
    rank = pareto.ranks(points)
    for i, p in enumerate(points):
        dominated = any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)
        assert (rank[i] == 0) == (not dominated)


@pytest.mark.parametrize("seed", range(5))
def test_each_rank_is_dominated_only_by_lower_ranks(seed):
    points = _points(seed)
    rank = pareto.ranks(points)
    for i, j in itertools.permutations(range(len(points)), 2):
        if pareto.dominates(points[i], points[j]):
            assert rank[i] < rank[j]
    for i, r in enumerate(rank):  # and a point of rank k > 0 has a dominator of rank k - 1
        if r:
            assert any(rank[j] == r - 1 and pareto.dominates(points[j], points[i]) for j in range(len(points)))


def test_equal_points_share_a_rank():
    assert pareto.ranks([(0.99, 8000), (0.99, 8000), (0.98, 9000)]) == [0, 0, 1]


@pytest.mark.parametrize("seed", range(3))
def test_hypervolume_equals_a_grid_count(seed):
    points, ref = _points(seed, 15), (0.9, 128 * 1024)
    grid = [(0.9 + (a + 0.5) / 1000, 2 ** (12 + (b + 0.5) * 5 / 200)) for a in range(100) for b in range(200)]
    covered = sum(any(p[0] >= g[0] and p[1] <= g[1] for p in points) for g in grid)
    cell = (0.1 / 100) * (5 / 200)
    exact = pareto.hypervolume(points, ref)
    # The grid covers log2 bytes from 12 to 17 (the points' range within the reference).
    assert exact == pytest.approx(covered * cell, rel=0.03)
    assert pareto.hypervolume(points + [(0.5, 1024)], ref) == exact  # below the reference: adds nothing
    front = [p for p, r in zip(points, pareto.ranks(points)) if r == 0]
    assert pareto.hypervolume(front, ref) == pytest.approx(exact)  # dominated points add nothing
    assert math.isclose(pareto.hypervolume([ref], ref), 0.0)  # nor does the reference point itself


def test_annotate_ranks_completed_trials_only():
    records = [
        {"id": "0", "status": "completed", "val_accuracy": 0.99, "est_flash_bytes": 9000},
        {"id": "1", "status": "completed", "val_accuracy": 0.98, "est_flash_bytes": 20000},
        {"id": "2", "status": "skipped", "val_accuracy": None, "est_flash_bytes": 100},
        {"id": "3", "status": "completed", "val_accuracy": 0.97, "est_flash_bytes": 5000},
    ]
    assert [r["pareto_rank"] for r in pareto.annotate(records)] == [0, 1, None, 0]


def test_crowding_ends_are_infinite_and_inner_points_sum_their_neighbours_gaps():
    points = [(0.90, 2 ** 12), (0.95, 2 ** 13), (0.97, 2 ** 15), (0.99, 2 ** 16)]
    d = pareto.crowding(points)
    assert d[0] == d[3] == math.inf
    # point 1: accuracy neighbours 0.90 and 0.97 over a 0.09 span; log2 bytes 12 and 15 over a 4 span.
    assert d[1] == pytest.approx(0.07 / 0.09 + 3 / 4)
    assert d[2] == pytest.approx(0.04 / 0.09 + 3 / 4)


@pytest.mark.parametrize("seed", range(5))
def test_order_puts_every_rank_before_the_next_and_spreads_a_rank_by_crowding(seed):
    points = _points(seed)
    rank, placed = pareto.ranks(points), pareto.order(points)
    assert sorted(placed) == list(range(len(points)))
    assert [rank[i] for i in placed] == sorted(rank)  # the front first, then rank 1, ...
    for k in set(rank):
        members = [i for i in range(len(points)) if rank[i] == k]  # crowding within the rank
        crowd = dict(zip(members, pareto.crowding([points[i] for i in members])))
        assert [crowd[i] for i in placed if rank[i] == k] == sorted(crowd.values(), reverse=True)


def _points3(seed: int, n: int = 40) -> list[tuple[float, float, float]]:
    rng = random.Random(seed)  # accuracy, flash bytes, arena bytes: coarse, so that ties occur
    return [(rng.randint(90, 100) / 100, rng.randint(4, 64) * 1024, rng.randint(2, 16) * 1024) for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_three_objectives_rank_zero_is_exactly_the_non_dominated_set(seed):
    points = _points3(seed)
    rank = pareto.ranks(points)
    for i, p in enumerate(points):
        dominated = any(q[0] >= p[0] and q[1] <= p[1] and q[2] <= p[2] and q != p for q in points)
        assert (rank[i] == 0) == (not dominated)
    # The third objective counts: a point that is only smaller in arena is on the front too.
    assert pareto.ranks([(0.99, 8000, 9000), (0.99, 8000, 5000), (0.98, 9000, 4000)]) == [1, 0, 0]
    order = pareto.order(points)
    assert sorted(order) == list(range(len(points))) and [rank[i] for i in order] == sorted(rank)


def test_annotate_ranks_by_the_objectives_asked_for():
    records = [{"id": "0", "status": "completed", "val_accuracy": 0.99, "est_flash_bytes": 8000, "arena_bytes": 9000},
               {"id": "1", "status": "completed", "val_accuracy": 0.99, "est_flash_bytes": 9000, "arena_bytes": 4000}]
    ranked = lambda objectives: [r["pareto_rank"] for r in pareto.annotate(records, objectives)]  # noqa: E731
    assert ranked(("accuracy", "flash")) == [0, 1]
    assert ranked(("accuracy", "arena")) == [1, 0]
    assert ranked(("accuracy", "flash", "arena")) == [0, 0]
