"""Refit `tuning/size.py`'s flash-size constants: python benchmarks/size_fit.py [--draws N] [--clusters C].

Converts the starting points, corners and random draws of the five built-in spaces with random weights
(`export/file_size.py`), takes each one's flash form, and fits the estimate's per-channel, per-op and fixed
bytes by least squares of the relative error (one byte per weight is kept). With --clusters, the clustered
variants' flash forms instead, and the bytes of each DECODE op given the other constants. Prints the
constants and the worst error of the fit.
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from mnist_opt.export.file_size import flash_bytes
from mnist_opt.tuning import size, space
from mnist_opt.tuning.architecture import architecture, layer_plan
from mnist_opt.tuning.space import Choice, Fixed


def draw(s: space.SearchSpace, rng: random.Random, which: str | None = None) -> dict:
    """A design of space `s`: its low or high corner, or a random draw (filters drawn per block)."""
    def pick(p):
        if isinstance(p, Fixed):
            return p.value
        values = p.values if isinstance(p, Choice) else [p.min, p.max]
        return {"low": min, "high": max}.get(which, rng.choice)(values)
    values = {k: pick(p) for k, p in s.params.items() if k != "filters"}
    values.update({f"filters_{b}": pick(s.params["filters"]) for b in range(values["conv_blocks"])})
    return values


def features(values: dict) -> list[float]:
    """What the estimate counts besides the weights: channels, convs, dense ops, pools, and 1."""
    layers = list(size._weight_layers(values))
    pools = sum(kind == "pool" for kind, *_ in layer_plan(architecture(values)))
    return [sum(u for _, _, u, _ in layers), sum(k != "dense" for k, *_ in layers),
            sum(k == "dense" for k, *_ in layers), pools, 1.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=8, help="random draws per space")
    parser.add_argument("--clusters", type=int, default=None, help="fit the DECODE bytes on clustered variants")
    args = parser.parse_args()
    rng = random.Random(0)
    representative = np.random.default_rng(0).random((20, 28, 28, 1), dtype="float32")
    designs = []
    for name in space.builtin_names():
        s = space.load(name)
        designs += [dict(d) for d in s.starts] + [draw(s, rng, w) for w in ("low", "high")]
        designs += [draw(s, rng) for _ in range(args.draws)]
    real = np.array([flash_bytes(v, representative, args.clusters) for v in designs], float)
    if args.clusters is not None:
        fit_decode(designs, real, args.clusters)
        return
    weights = np.array([sum(w for _, w, _, _ in size._weight_layers(v)) for v in designs], float)
    x = np.array([features(v) for v in designs])
    # Relative errors are what the estimate promises: each design's row is weighted by 1 / its size.
    coef, *_ = np.linalg.lstsq(x / real[:, None], (real - weights) / real, rcond=None)
    fit = weights + x @ np.round(coef)
    error = (fit - real) / real
    for label, c in zip(("per channel", "per conv", "per dense", "per pool", "fixed"), np.round(coef)):
        print(f"{label}: {c:.0f}")
    worst = int(np.abs(error).argmax())
    print(f"worst: {designs[worst]} ({real[worst]:,.0f} bytes, estimated {fit[worst]:,.0f})")
    print(f"{len(designs)} designs, {real.min():,.0f} to {real.max():,.0f} bytes; "
          f"worst error {100 * np.abs(error).max():.2f}%, mean {100 * np.abs(error).mean():.2f}%")


def fit_decode(designs: list[dict], real: np.ndarray, clusters: int) -> None:
    """The bytes a DECODE op and its tensors add, given the other constants; and the estimate's error with it."""
    decodes = np.array([sum(k != "depthwise" and size.lut_pays(w, u, clusters) for k, w, u, _ in size._weight_layers(v))
                        for v in designs], float)
    rest = np.array([size.estimate_flash_bytes(v, clusters) for v in designs], float) - decodes * size.FLASH_BYTES_PER_DECODE
    (per_decode,), *_ = np.linalg.lstsq((decodes / real)[:, None], (real - rest) / real, rcond=None)
    error = (rest + decodes * round(per_decode) - real) / real
    worst = int(np.abs(error).argmax())
    print(f"per decode: {per_decode:.0f}")
    print(f"worst: {designs[worst]} ({real[worst]:,.0f} bytes)")
    print(f"{len(designs)} designs at {clusters} clusters, {real.min():,.0f} to {real.max():,.0f} bytes; "
          f"worst error {100 * np.abs(error).max():.2f}%, mean {100 * np.abs(error).mean():.2f}%")


if __name__ == "__main__":
    main()
