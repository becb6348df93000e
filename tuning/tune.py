"""The tuning stage, top to bottom: inputs, run directory, search, winner, retrain. Everything it writes goes
under the run directory:

    tuner/              Keras Tuner state (what a resumed search reloads)
    tensorboard/        one log directory per trial, with HParams
    trials.json         every trial: status, start, hyperparameters, epochs, val_accuracy, params,
                        est_flash_bytes, pareto_rank, seconds, error, ...
    best_hparams.json   the winner's hyperparameters
    best.keras          the winner, retrained on the whole train split
    config.json         resolved settings, package versions, seed, data hash
    frontier.json, frontier/   with --budgets, instead of best.*: one model per size budget (`tuning.frontier`)
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnist_opt import data, rundir, runio, runtime
from mnist_opt.errors import RunDirError, SearchFailed
from mnist_opt.tuning import frontier, space as space_module
from mnist_opt.tuning.limits import Measures, needs_measures
from mnist_opt.tuning.config import ADDED_FIELDS, TuneConfig
from mnist_opt.tuning.retrain import retrain
from mnist_opt.tuning.search import search
from mnist_opt.tuning.select import merit, retrain_minutes, winner
from mnist_opt.tuning.tuners import require_workarounds
from mnist_opt.versions import package_versions

OUTPUTS = ("tuner", "tensorboard", rundir.TRIALS, rundir.BEST_HPARAMS, rundir.BEST_MODEL, rundir.CONFIG,
           rundir.FRONTIER, "frontier")

Log = Callable[[str], None]


@dataclass(frozen=True)
class TuneResult:
    run_dir: Path
    best: dict | None  # the best_hparams.json document; None for a run tuned with --budgets
    counts: dict  # trials per status
    frontier: dict | None = None  # the frontier.json document of a run tuned with --budgets


# What a search's sizes measure (est_flash_bytes, --max-kb): a search made when they were the int8 file's
# (no such key) is not resumed, since its records and budgets mean other bytes.
SIZES = "flash form"
# Search settings added with the data's shape and classes (#45): an older run was made on MNIST, as it is.
ADDED_SETTINGS = {k: v for k, v in ADDED_FIELDS.items() if k in TuneConfig().search_settings()} | {
    "data_shape": "28x28x1", "data_classes": 10}


def prepare_run_dir(cfg: TuneConfig, settings: dict) -> Path:
    """Make the run directory ready: new, resumed (same settings), or cleared (--overwrite)."""
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir}: exists and is not a directory; "
                          "pass --run-dir with a new or existing directory")
    config_path = run_dir / rundir.CONFIG
    if cfg.overwrite:
        for name in OUTPUTS:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    elif config_path.exists():
        before = ADDED_SETTINGS | runio.read_json(config_path).get("search", {})
        diff = [f"{k}: {before.get(k)!r} -> {settings.get(k)!r}"
                for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k)]
        if diff:
            raise RunDirError(f"run directory {run_dir} holds a search with other settings ("
                              + "; ".join(diff) + "); pass --overwrite to start it again, "
                              "or choose a new --run-dir")
    runio.check_writable(run_dir)
    return run_dir


def tune(cfg: TuneConfig, log: Log = lambda line: None, measures: Measures | None = None) -> TuneResult:
    """The tuning stage: search, check the trials, retrain the winner, save.

    `measures` converts designs to learn their exact flash form and arena; a run with --budgets, --max-arena-kb
    or the arena objective needs it (`mnist_opt.workflow.tune` passes the export stage's).
    """
    check_measures(cfg, measures)
    space, split, run_dir = start(cfg, log=log)
    records = search(cfg, space, split, run_dir, log, measures=measures)  # resumes where a killed one stopped
    return finish(cfg, space, split, run_dir, records, log, measures)


def check_measures(cfg: TuneConfig, measures: Measures | None) -> None:
    if needs_measures(cfg) and measures is None:
        raise TypeError("a search with budgets or an arena limit or objective needs measures, "
                        "the exact flash form and arena of a design")


def start(cfg: TuneConfig, write: bool = True, log: Log = lambda line: None) -> tuple:
    """Inputs first, so that bad input writes nothing; then the run directory (new, resumed or cleared).

    The space is made for the data: its images' shape and classes fixed in every design (`space.for_data`).
    """
    space = space_module.load(cfg.space)
    split = data.load_split(cfg.seed, data.Source.of(cfg.to_dict()), log)
    info = split.info
    space = space_module.for_data(space, info.shape, info.classes, info.digits)
    precision = runtime.training_dtype() or "float32"  # $MNIST_OPT_PRECISION, checked before anything is written
    # What differs is named on a refused resume: the data's hash, and its shape and classes in words.
    settings = dict(cfg.search_settings(), space_sha256=_sha256(space.text), data_sha256=split.content_sha256,
                    data_shape="x".join(map(str, info.shape)), data_classes=info.classes, sizes=SIZES)
    require_workarounds(cfg)  # a library that changed is refused before the run directory is touched
    run_dir = prepare_run_dir(cfg, settings)
    if write:
        runio.write_json(run_dir / rundir.CONFIG, {
            "tune": cfg.to_dict(), "search": settings, "space_path": space.path, "data_source": split.source,
            "data": info.to_dict(),
            "precision": precision, "packages": package_versions(),
        })
    return space, split, run_dir


def finish(cfg: TuneConfig, space, split: data.Split, run_dir: Path, records: list[dict], log: Log,
           measures: Measures | None = None) -> TuneResult:
    """Check the trials, retrain the winner on the whole train split, save best.keras."""
    # A search with no completed trial has no result.
    counts = {s: sum(r["status"] == s for r in records) for s in ("completed", "failed", "skipped")}
    completed = [r for r in records if r["status"] == "completed"]
    if not completed:
        first = next((r["error"] for r in records if r["error"]), "no trial ran")
        arenas = [r for r in records if r.get("arena_bytes") is not None]
        smallest = min(arenas, key=lambda r: r["arena_bytes"]) if arenas else None
        raise SearchFailed(f"no trial completed ({counts['failed']} failed, {counts['skipped']} skipped); "
                           f"first error: {first}" + ("" if smallest is None or cfg.max_arena_kb is None else
                           f"; the smallest arena seen was trial {smallest['id']}'s, {smallest['arena_bytes']:,} bytes "
                           f"against --max-arena-kb {cfg.max_arena_kb:g} ({int(cfg.max_arena_kb * 1024):,} bytes): "
                           "raise the limit, or search smaller designs (a space with narrower stride-2 stems)"))
    top = max(completed, key=merit)
    log(f"search done: {counts['completed']} completed, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"best trial {top['id']} val_accuracy {top['val_accuracy']:.4f}")
    # The records come ranked: search() and the distributed chief annotate them.
    front = sorted((r for r in completed if r["pareto_rank"] == 0), key=lambda r: r["est_flash_bytes"])
    log("Pareto front of val_accuracy and estimated flash size: " + ", ".join(
        f"trial {r['id']} {r['val_accuracy']:.4f} in {r['est_flash_bytes'] / 1024:.1f} KB" for r in front))
    measured: dict[str, float] = {}  # trial id -> retrain minutes; each trial is timed once

    def estimate(record: dict) -> float:
        if record["id"] not in measured:
            measured[record["id"]] = retrain_minutes(record, cfg, split)
        return measured[record["id"]]

    if cfg.budgets:  # one model per size budget instead of one winner
        check_measures(cfg, measures)
        doc = frontier.finish(cfg, space, split, run_dir, completed, estimate, measures, log)
        return TuneResult(run_dir, None, counts, frontier=doc)
    (run_dir / rundir.FRONTIER).unlink(missing_ok=True)  # one winner now: no longer a frontier run
    best = winner(completed, cfg, estimate, log)  # top, unless it cannot be retrained in time
    doc = retrain(cfg, space, split, run_dir, best, estimate(best) if cfg.final_minutes is not None else None, log)
    return TuneResult(run_dir, doc, counts)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
