"""The accuracy-size trade-off of a search: Pareto ranks and the hypervolume of a front.

Objectives: validation accuracy (higher is better), then one or more costs in bytes (fewer is better):
the estimated flash form's and, with `--objectives accuracy,flash,arena`, the TensorFlow Lite Micro arena.
Rank 0 is the non-dominated set (the front); rank k the front once ranks < k are removed.
"""

from __future__ import annotations

import math

Point = tuple[float, ...]  # (accuracy, bytes, ...)

# Where each objective other than accuracy is in a trial's record.
RECORD_KEYS = {"flash": "est_flash_bytes", "arena": "arena_bytes"}


def dominates(a: Point, b: Point) -> bool:
    """a is at least as good as b on every objective and better on one."""
    return a[0] >= b[0] and all(x <= y for x, y in zip(a[1:], b[1:])) and a != b


def ranks(points: list[Point]) -> list[int]:
    """Each point's non-dominated rank (0 = on the front), by repeated peeling."""
    rank = [-1] * len(points)
    left, k = set(range(len(points))), 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        for i in front:
            rank[i] = k
        left -= front
        k += 1
    return rank


def crowding(points: list[Point]) -> list[float]:
    """Each point's crowding distance within `points` (NSGA-II's): the normalized gap between its
    neighbours on each objective, summed; the ends of each objective are infinitely far.

    Sizes are compared in log2 bytes, as the hypervolume measures them: 8 KB to 16 KB is as far as 32 to 64.
    """
    n = len(points)
    distance = [0.0] * n
    if not n:
        return distance
    for values in [[p[0] for p in points]] + [[math.log2(p[k]) for p in points] for k in range(1, len(points[0]))]:
        order = sorted(range(n), key=values.__getitem__)
        span = values[order[-1]] - values[order[0]]
        distance[order[0]] = distance[order[-1]] = math.inf
        for before, i, after in zip(order, order[1:], order[2:]):
            if span > 0:
                distance[i] += (values[after] - values[before]) / span
    return distance


def order(points: list[Point]) -> list[int]:
    """Indices of `points`, best first: by non-dominated rank, then by crowding distance within a rank
    (far from its neighbours first, so that a front is kept spread over sizes), then by index.

    The order in which MO-ASHA promotes a round's trials (Schmucker et al., 2021).
    """
    rank = ranks(points)
    distance = [0.0] * len(points)
    for k in set(rank):
        members = [i for i, r in enumerate(rank) if r == k]
        for i, d in zip(members, crowding([points[i] for i in members])):
            distance[i] = d
    return sorted(range(len(points)), key=lambda i: (rank[i], -distance[i], i))


def hypervolume(points: list[Point], reference: Point) -> float:
    """Area dominated by `points` and bounded by `reference` (accuracy, bytes), in (accuracy, log2 bytes).

    Points no better than the reference on both objectives add nothing.
    """
    ref_acc, ref_log = reference[0], math.log2(reference[1])
    kept = sorted((log, acc) for acc, b in points if acc > ref_acc and (log := math.log2(b)) < ref_log)
    area, best = 0.0, ref_acc
    for log, acc in kept:  # from the smallest file up: each adds its gain in accuracy
        if acc > best:
            area += (acc - best) * (ref_log - log)
            best = acc
    return area


def point(record: dict, objectives=("accuracy", "flash")) -> Point:
    """A completed trial's objectives: (val_accuracy, bytes of each cost objective)."""
    return (record["val_accuracy"], *(record[RECORD_KEYS[o]] for o in objectives[1:]))


def annotate(records: list[dict], objectives=("accuracy", "flash")) -> list[dict]:
    """The records with `pareto_rank` set on completed trials (None on the others), over `objectives`."""
    done = [r for r in records if r["status"] == "completed"]
    by_id = dict(zip((r["id"] for r in done), ranks([point(r, objectives) for r in done])))
    return [dict(r, pareto_rank=by_id.get(r["id"])) for r in records]
