"""The frontier search against Optuna's multi-objective default (NSGA-II): hypervolume over time (#29).

Both sides search the `frontier` space for the front of (validation accuracy, estimated flash bytes),
with the same trial training (`mnist_opt.tuning.trial.fit_trial`: the project's input pipeline, model and
Adam at the trial's rate, 10,000 training images an epoch), in the same time budget, once per seed,
alternating. The project runs `--tuner pareto` (Hyperband promoting by Pareto rank, 1-9 epochs a
trial); Optuna runs `NSGAIISampler` with its defaults, each trial for OPTUNA_EPOCHS epochs (NSGA-II
has no multi-fidelity). Both train the space's starting points first (Optuna: `enqueue_trial`).

Scored: the hypervolume of the completed trials' front in (accuracy, log2 bytes) against REFERENCE,
at every MARK_MINUTES; the target is the project's median at half the budget against Optuna's
median at the whole budget.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

REFERENCE = (0.90, 128 * 1024)  # (val accuracy, bytes): below 90% or over 128 KB adds no volume
MARK_MINUTES = 5
OPTUNA_EPOCHS = 3  # Hyperband's middle rung (1, 3, 9 epochs at max_epochs 9)
SPACE = "frontier"
TRAIN_SUBSET = 10000  # images per trial epoch, as the frontier preset's search


class _Budget(Exception):
    """The time budget is spent: stop the search where it is."""


def marks(minutes: float) -> list[float]:
    """The minutes at which the hypervolume is taken: every MARK_MINUTES, half the budget and the budget."""
    if minutes <= 0:
        raise ValueError(f"--search-minutes: expected a positive budget, got {minutes}")
    return sorted({*range(MARK_MINUTES, int(minutes), MARK_MINUTES), minutes / 2, minutes})


def hypervolumes(curve: list[list[float]], minutes: float) -> dict[str, float]:
    """Hypervolume of the trials completed by each mark: {"5": hv, "6": hv, "10": hv, "12": hv} for 12 minutes.

    `curve`: (seconds, val_accuracy, est_flash_bytes) at each trial's end, in order.
    """
    from mnist_opt.tuning import pareto

    return {f"{m:g}": pareto.hypervolume([(a, b) for s, a, b in curve if s <= 60 * m], REFERENCE)
            for m in marks(minutes)}


def project_curve(seed: int, minutes: float, work: Path) -> list[list[float]]:
    """The project's Pareto search for `minutes`: (seconds, val_accuracy, est bytes) at each trial's end."""
    from mnist_opt import data, runio
    from mnist_opt.tuning import space as space_module
    from mnist_opt.tuning.config import TuneConfig
    from mnist_opt.tuning.search import search
    from mnist_opt.tuning.tune import prepare_run_dir

    cfg = TuneConfig(space=SPACE, tuner="pareto", train_subset=TRAIN_SUBSET, max_trials=10**6, seed=seed,
                     max_kb=REFERENCE[1] / 1024, run_dir=str(work / f"hv-project-{seed}"))
    split, space = data.load_split(seed), space_module.load(SPACE)
    ends, start = [], time.perf_counter()

    def log(line: str) -> None:
        if line.startswith("trial "):
            ends.append((line.split()[1], round(time.perf_counter() - start, 1)))
        if time.perf_counter() - start > 60 * minutes:
            raise _Budget()

    try:
        search(cfg, space, split, prepare_run_dir(cfg, {}), log)
    except _Budget:
        pass
    records = {r["id"]: r for r in runio.read_json(Path(cfg.run_dir) / "trials.json")}
    return [[s, records[i]["val_accuracy"], records[i]["est_flash_bytes"]] for i, s in ends
            if s <= 60 * minutes and records[i]["status"] == "completed"]


def suggest(trial, space) -> dict:
    """The space's values drawn by an Optuna trial: each key as the space declares it, filters per block."""
    from mnist_opt.tuning.space import Choice, Fixed

    values = {}
    for key, p in space.params.items():
        if key == "filters":
            continue
        if isinstance(p, Fixed):
            values[key] = p.value
        elif isinstance(p, Choice):
            values[key] = trial.suggest_categorical(key, list(p.values))
        elif isinstance(p.min, int) and isinstance(p.max, int):
            values[key] = trial.suggest_int(key, p.min, p.max, step=p.step or 1, log=p.sampling == "log")
        else:
            values[key] = trial.suggest_float(key, p.min, p.max, step=p.step, log=p.sampling == "log")
    filters = space.params["filters"]
    for b in range(values["conv_blocks"]):
        values[f"filters_{b}"] = (filters.value if isinstance(filters, Fixed)
                                  else trial.suggest_categorical(f"filters_{b}", list(filters.values)))
    return values


def optuna_curve(seed: int, minutes: float) -> list[list[float]]:
    """Optuna's NSGA-II over the same space for `minutes`, trained as the project's trials."""
    import optuna

    from mnist_opt import data
    from mnist_opt.tuning import space as space_module
    from mnist_opt.tuning.config import TuneConfig
    from mnist_opt.tuning.size import estimate_flash_bytes
    from mnist_opt.tuning.trial import fit_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = TuneConfig(space=SPACE, train_subset=TRAIN_SUBSET, seed=seed)
    split, space = data.load_split(seed), space_module.load(SPACE)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.NSGAIISampler(seed=seed))
    for values in space.starts:  # the same starting points as the project's search
        study.enqueue_trial({k: v for k, v in values.items() if k in space.params or k.startswith("filters_")})
    curve, start = [], time.perf_counter()

    def objective(trial):
        values = suggest(trial, space)
        size = estimate_flash_bytes(values)
        if size > REFERENCE[1]:  # as --max-kb skips them in the project's search: no training
            raise optuna.TrialPruned()
        accuracy = fit_trial(values, split, cfg, seed + trial.number, OPTUNA_EPOCHS)
        seconds = time.perf_counter() - start
        if seconds <= 60 * minutes:
            curve.append([round(seconds, 1), accuracy, size])
        return accuracy, size

    def budget(study, trial):
        if time.perf_counter() - start > 60 * minutes:
            study.stop()

    study.optimize(objective, callbacks=[budget])
    return curve


def compare(minutes: float, work: Path, seeds: tuple[int, ...] = (1, 2, 3)) -> dict:
    """Both searches once per seed, alternating; hypervolumes at the marks; the medians compared."""
    project, optuna_ = {}, {}
    for seed in seeds:
        project[str(seed)] = project_curve(seed, minutes, work)
        optuna_[str(seed)] = optuna_curve(seed, minutes)
    hv = {side: {s: hypervolumes(c, minutes) for s, c in curves.items()}
          for side, curves in (("project", project), ("optuna", optuna_))}
    median = lambda side, mark: statistics.median(v[mark] for v in hv[side].values())  # noqa: E731
    half, whole = f"{minutes / 2:g}", f"{minutes:g}"
    return {"budget_minutes": minutes, "seeds": list(seeds), "reference": list(REFERENCE),
            "optuna_epochs": OPTUNA_EPOCHS, "curves": {"project": project, "optuna": optuna_}, "hypervolume": hv,
            "median": {side: {f"{m:g}": median(side, f"{m:g}") for m in marks(minutes)} for side in hv},
            "project_at_half": median("project", half), "optuna_at_budget": median("optuna", whole),
            "half_mark": half}
