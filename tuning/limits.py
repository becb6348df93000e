"""The device limits a design must meet before it trains: flash, TensorFlow Lite Micro arena, compute.

    --max-kb         the flash form's estimated bytes (`tuning.size.estimate_flash_bytes`)
    --max-arena-kb   the arena TFLite Micro plans for the design converted with random weights (`Measures`)
    --max-macs       multiply-accumulates per image (`tuning.size.count_macs`)

The arena depends on the layers and tensor shapes, not on the weights' values: the arena the export later
measures on the trained file is the same plan (within the 5% the estimate promises, `ARENA_ERROR`; a test).
It is the uncompressed flash form's: LUT compression writes decoded kernels into the arena, so a
compressed form needs more, and the budgets and the export take it only where it fits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mnist_opt.tuning.architecture import input_shape
from mnist_opt.tuning.config import TuneConfig
from mnist_opt.tuning.size import count_macs, count_params, estimate_flash_bytes, peak_activation_bytes

KB = 1024
ARENA_ERROR = 0.05  # what the arena before training promises against the exported file's measured arena
CALIBRATION_IMAGES = 20  # what the conversions calibrate on: sizes and arenas do not depend on it

# (values, calibration images, clusters, max arena bytes) -> bytes of the smallest flash form whose arena fits
# (None: none does); (values, calibration images) -> the design's arena bytes. The export stage makes files,
# so the caller (`mnist_opt.workflow`) passes them in: tuning comes before export.
FlashBytes = Callable[[dict, np.ndarray, "int | None", "int | None"], "int | None"]
ArenaBytes = Callable[[dict, np.ndarray], int]


@dataclass
class Measures:
    """A design's exact flash form and arena, from converting it with random weights; each design measured once."""

    flash: FlashBytes
    arena: ArenaBytes
    _flash: dict = field(default_factory=dict, repr=False)
    _arena: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def calibration(values: dict) -> np.ndarray:
        """Images of the design's input shape: quantization scales, not sizes, depend on what they hold."""
        return np.random.default_rng(0).uniform(0, 1, (CALIBRATION_IMAGES, *input_shape(values))).astype(np.float32)

    def arena_bytes(self, values: dict) -> int:
        key = _key(values)
        if key not in self._arena:
            self._arena[key] = self.arena(values, self.calibration(values))
        return self._arena[key]

    def flash_bytes(self, values: dict, clusters: int | None, max_arena: int | None = None) -> int | None:
        key = (_key(values), clusters, max_arena)
        if key not in self._flash:
            self._flash[key] = self.flash(values, self.calibration(values), clusters, max_arena)
        return self._flash[key]


def _key(values: dict) -> str:
    return json.dumps({k: v for k, v in values.items() if not k.startswith("tuner/")}, sort_keys=True)


def counted_clusters(cfg: TuneConfig) -> int | None:
    """The clusters the flash estimate counts: `--clusters`, except under an arena limit, where the search counts
    the uncompressed flash form (LUT compression writes decoded kernels into the arena: the flash it saves
    costs RAM). A budget's exact size still takes a compressed form where its arena fits (`tuning.frontier`)."""
    return None if cfg.max_arena_kb is not None else cfg.clusters


def estimated_flash(values: dict, cfg: TuneConfig) -> int:
    """The flash form's estimated bytes a search with `cfg` ranks and limits designs by."""
    return estimate_flash_bytes(values, counted_clusters(cfg))


def max_arena_bytes(cfg: TuneConfig) -> int | None:
    return None if cfg.max_arena_kb is None else int(cfg.max_arena_kb * KB)


def needs_measures(cfg: TuneConfig) -> bool:
    """Whether a search with `cfg` converts designs: budgets (exact flash sizes), an arena limit or objective."""
    return bool(cfg.budgets) or cfg.measures_arena()


def over(values: dict, cfg: TuneConfig, measures: Measures | None) -> str | None:
    """Why the design of `values` breaks one of `cfg`'s limits, or None; the cheap checks first, the arena last."""
    params = count_params(values)
    if cfg.max_params is not None and params > cfg.max_params:
        return f"{params:,} parameters > --max-params {cfg.max_params:,}"
    macs = count_macs(values)
    if cfg.max_macs is not None and macs > cfg.max_macs:
        return f"{macs:,} multiply-accumulates > --max-macs {cfg.max_macs:,}"
    size = estimated_flash(values, cfg)
    if cfg.max_kb is not None and size > cfg.max_kb * KB:
        return f"estimated flash form {size / KB:,.1f} KB > --max-kb {cfg.max_kb:g}"
    if cfg.max_arena_kb is not None:
        peak = peak_activation_bytes(values)  # a lower bound, without converting
        if peak > cfg.max_arena_kb * KB:
            return f"TensorFlow Lite Micro arena at least {peak / KB:,.2f} KB (activations) > --max-arena-kb {cfg.max_arena_kb:g}"
        if measures is None:
            raise TypeError("a search with --max-arena-kb needs Measures, to plan each design's arena")
        arena = measures.arena_bytes(values)
        if arena > cfg.max_arena_kb * KB:
            return f"TensorFlow Lite Micro arena {arena / KB:,.2f} KB > --max-arena-kb {cfg.max_arena_kb:g}"
    return None


def figures(values: dict, cfg: TuneConfig, measures: Measures | None) -> dict:
    """What trials.json records of a design's cost: parameters, MACs, estimated flash, and the arena where measured."""
    return {"params": count_params(values), "macs": count_macs(values),
            "est_flash_bytes": estimated_flash(values, cfg),
            "arena_bytes": measures.arena_bytes(values) if measures is not None and cfg.measures_arena() else None}
