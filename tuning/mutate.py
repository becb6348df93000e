"""Neighbours of a design: what --tuner pareto starts most new trials from.

As in aging evolution (Real et al., 2019) and μNAS (Liberis et al., 2021), which searches models for
microcontrollers this way, a new candidate is a member of the current front with one hyperparameter
moved to a neighbouring value: the next or previous filter count, one block more or fewer, a learning
rate a little higher or lower. The front's designs are the best known for their sizes, so their
neighbours are more likely to be good than a uniform draw is; the rest of the trials stay uniform draws,
to keep looking elsewhere.
"""

from __future__ import annotations

import math
import random

import keras_tuner


def neighbour(values: dict, space: keras_tuner.HyperParameters, rng: random.Random) -> dict | None:
    """`values` (a trial's, `tuner/` keys left out) with one free hyperparameter moved to a neighbouring value,
    or None if none is free. Parameters a changed condition activates take their neighbour's value (a new
    block's filters: the block before it's), as `HyperParameters` declares them, in order."""
    free = [hp for hp in space.space if hp.name in values and not isinstance(hp, keras_tuner.engine.hyperparameters.Fixed)]
    if not free:
        return None
    hp = rng.choice(free)
    moved = {k: v for k, v in values.items() if not k.startswith("tuner/")} | {hp.name: step(hp, values[hp.name], rng)}
    filled = keras_tuner.HyperParameters()
    for p in space.space:
        filled.merge([p])
        if filled.is_active(p):
            filled.values[p.name] = moved[p.name] if p.name in moved else inherited(p, filled.values, rng)
    return dict(filled.values)


def step(hp, value, rng: random.Random):
    """A neighbouring value of `hp`: the next or previous of an ordered choice (the other way at an end), the
    other boolean, an integer or a float on a grid one step away (the other way at an end), another float within
    a factor of about 1.3 (log scale) or 0.1 of its range."""
    hps = keras_tuner.engine.hyperparameters
    if isinstance(hp, hps.Boolean):
        return not value
    if isinstance(hp, hps.Choice):
        options = list(hp.values)
        if not all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in options):
            return rng.choice([o for o in options if o != value] or options)
        options.sort()
        i = options.index(value)
        j = i + rng.choice((-1, 1))
        return options[j if 0 <= j < len(options) else i - (j - i)] if len(options) > 1 else value
    if isinstance(hp, hps.Int) or (isinstance(hp, hps.Float) and hp.step):  # a grid: one step, back at an end
        stride = hp.step or 1
        moved = value + rng.choice((-stride, stride))
        return moved if hp.min_value <= moved <= hp.max_value else value - (moved - value)
    if isinstance(hp, hps.Float):
        if hp.sampling == "log":
            moved = value * math.exp(rng.uniform(-0.25, 0.25))
        else:
            moved = value + rng.uniform(-0.1, 0.1) * (hp.max_value - hp.min_value)
        return min(max(moved, hp.min_value), hp.max_value)
    return value


def inherited(hp, values: dict, rng: random.Random):
    """A value for a parameter a mutation made active: `filters_k` takes `filters_{k-1}`'s, others a draw."""
    name, _, k = hp.name.rpartition("_")
    before = values.get(f"{name}_{int(k) - 1}") if k.isdigit() else None
    if before is not None and before in getattr(hp, "values", [before]):
        return before
    return hp.random_sample(rng.randrange(2**31))


def draw(space: keras_tuner.HyperParameters, rng: random.Random) -> dict:
    """A uniform draw of every parameter `space` makes active, in declaration order: what --tuner pareto starts
    from when its limits leave few designs (Hyperband's own draw has no way to be told to redraw)."""
    filled = keras_tuner.HyperParameters()
    for p in space.space:
        filled.merge([p])
        if filled.is_active(p):
            filled.values[p.name] = p.random_sample(rng.randrange(2**31))
    return dict(filled.values)
