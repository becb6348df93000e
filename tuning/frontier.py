"""The accuracy-size frontier of a search: for each size budget, its best model that fits, retrained.

    RUN/frontier.json       per budget (KB of the flash form): the trial chosen, or why none fits
    RUN/frontier/<K>kb/     a run directory of its own (config.json, best.keras, best_hparams.json),
                            so that `export` and `report` work on it as on any tuned run

A budget's model is the trial with the best validation accuracy (then fewer parameters) whose flash form
fits: its exact size, from converting the model with random weights (`tuning.limits.Measures`, passed in), not
the estimate the search ranks by. Under --max-arena-kb it is the smallest form whose arena fits too (a
LUT-compressed form needs more RAM than the uncompressed one). A larger budget whose best model is a smaller budget's reuses that one.
Selection reads validation accuracy only. Each chosen trial is retrained for the epochs that fit in
--final-minutes: unlike the one winner of a plain search, it is not passed over for a faster one,
since the budget's best model is the point of its budget.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

from mnist_opt import data, rundir, runio
from mnist_opt.errors import RunDirError
from mnist_opt.tuning import limits
from mnist_opt.tuning.config import ADDED_FIELDS, TuneConfig
from mnist_opt.tuning.retrain import retrain
from mnist_opt.tuning.select import merit
from mnist_opt.tuning.size import ESTIMATE_ERROR

Log = Callable[[str], None]
KB = 1024  # bytes: budgets are in KB of the flash form's raw bytes (export/flash.py), what flash holds
# Trials estimated up to this much over a budget are converted to learn their exact size: a little
# more than the estimate's promised error.
ESTIMATE_SLACK = 1 + ESTIMATE_ERROR + 0.01
NO_FIT = float("inf")  # the size of a design no form of which fits the arena limit


def name(budget_kb: float) -> str:
    """The budget's directory under RUN/frontier/: 8 -> '8kb', 12.5 -> '12.5kb'."""
    return f"{budget_kb:g}kb"


def choose(completed: list[dict], budget_bytes: int, size: Callable[[dict], int]) -> dict | None:
    """The best completed trial whose flash form is at most `budget_bytes` (`size(record)`), or None."""
    found = best_fitting(completed, budget_bytes, size, 1)
    return found[0] if found else None


def best_fitting(completed: list[dict], budget_bytes: int, size: Callable[[dict], int], n: int) -> list[dict]:
    """The `n` best completed trials (by `merit`) whose flash form is at most `budget_bytes`, best first.

    `size` is asked only for trials whose estimate is within ESTIMATE_SLACK of the budget, best first,
    until `n` fit.
    """
    found = []
    for record in sorted(completed, key=merit, reverse=True):
        if len(found) == n:
            break
        if record["est_flash_bytes"] <= budget_bytes * ESTIMATE_SLACK and size(record) <= budget_bytes:
            found.append(record)
    return found


def plan(completed: list[dict], budgets: tuple[float, ...], size: Callable[[dict], int],
         finalists: int = 1) -> list[dict]:
    """frontier.json's entries, smallest budget first: each budget's trial, or why none fits.

    `finalists`: each entry also lists the ids of the budget's best `finalists` trials that fit (`finalists`),
    for `finish` to retrain and choose among; the entry's trial is the first, until then. With two or more, the
    best starting point that fits is always one (in the last place): the short trials rank designs that learn
    fast first, and a start, a design known to be good, is what a searched design must beat after retraining.

    Each also says what the search added: the validation accuracy of the best starting point that fits
    (`start_val_accuracy`) and of the best searched design that fits (`searched_val_accuracy`), and whether
    the budget's model is a searched design that beat every start (`searched_beat_starts`).
    """
    entries, taken = [], {}
    for kb in sorted(set(budgets)):
        budget = math.floor(kb * KB)
        top = best_fitting(completed, budget, size, finalists)
        best = top[0] if top else None
        entry = {"budget_kb": kb, "dir": None, "trial_id": None, "reason": None, "finalists": [r["id"] for r in top]}
        if best is None:
            smallest = min(completed, key=lambda r: r["est_flash_bytes"])
            bytes_ = size(smallest)
            entry["reason"] = (f"no finished trial's flash form fits in {kb:g} KB ({budget:,} bytes): "
                               f"the smallest, trial {smallest['id']}, is "
                               + (f"{bytes_:,} bytes" if bytes_ != NO_FIT else "over the arena limit in every form")
                               + "; search smaller models (--space tiny, or fewer filters in your space) or raise the budget")
        else:
            start = choose([r for r in completed if r.get("start")], budget, size)
            searched = choose([r for r in completed if not r.get("start")], budget, size)
            if finalists > 1 and start is not None and start not in top:  # the last place goes to the best start
                entry["finalists"] = [r["id"] for r in top[:finalists - 1]] + [start["id"]]
            entry.update(trial_id=best["id"], dir=taken.get(best["id"], f"frontier/{name(kb)}"),
                         flash_bytes=size(best), est_flash_bytes=best["est_flash_bytes"], params=best["params"],
                         search_val_accuracy=best["val_accuracy"], start=bool(best.get("start")),
                         start_val_accuracy=start and start["val_accuracy"],
                         searched_val_accuracy=searched and searched["val_accuracy"],
                         searched_beat_starts=searched is best and (start is None or merit(best) > merit(start)))
            taken.setdefault(best["id"], entry["dir"])
        entries.append(entry)
    return entries


def sub_config(run_dir: Path, cfg: TuneConfig, budget_kb: float) -> dict:
    """config.json of a budget's run directory: the search's, as a run tuned within `budget_kb`."""
    doc = runio.read_json(run_dir / rundir.CONFIG)
    return {**doc, "tune": {**cfg.to_dict(), "run_dir": str(run_dir / "frontier" / name(budget_kb)),
                            "max_kb": budget_kb, "budgets": None},
            "frontier": {"budget_kb": budget_kb, "search_run_dir": str(run_dir)}}


def retrained(out_dir: Path, record: dict, config: dict) -> bool:
    """Whether `out_dir` already holds this trial retrained from this search with these settings
    (a resumed run), by its config.json (`config`: what `sub_config` writes now) and best_hparams.json."""
    if rundir.missing(out_dir, rundir.TUNED):
        return False
    try:
        before, best = runio.read_json(out_dir / rundir.CONFIG), rundir.best(out_dir)
    except (RunDirError, OSError, ValueError):  # a damaged document: retrain
        return False
    return (before.get("search") == config["search"]
            and rundir.same_settings(ADDED_FIELDS | before.get("tune", {}), config["tune"])
            and best["trial_id"] == record["id"] and best["hyperparameters"] == record["hyperparameters"])


def finish(cfg: TuneConfig, space, split: data.Split, run_dir: Path, completed: list[dict],
           minutes: Callable[[dict], float], measures: limits.Measures, log: Log) -> dict:
    """Choose each budget's trial, retrain each chosen trial once, write frontier.json and return it.

    With --finalists N, a budget's N best trials that fit are each retrained, in RUN/frontier/finalists/<K>kb/<id>/
    (a trial that another budget has retrained is copied), and the best on validation after retraining (then fewer
    parameters) is the budget's model, copied into its directory.
    `measures`: the exact size of a design's flash form (the export stage's, passed in: tuning comes before export).
    """
    def size(record: dict) -> float:
        found = measures.flash_bytes(record["hyperparameters"], cfg.clusters, limits.max_arena_bytes(cfg))
        return NO_FIT if found is None else found

    done = {}  # trial id -> a directory that holds it retrained (this call's, or a resumed run's)

    def ensure(out: Path, record: dict, config: dict) -> None:  # `record` retrained into `out`, unless it is there
        if retrained(out, record, config):
            log(f"frontier {name(config['frontier']['budget_kb'])}: already retrained in {out}")
            done.setdefault(record["id"], out)
            return
        shutil.rmtree(out, ignore_errors=True)  # a new model: what was exported and reported from another one goes
        if record["id"] in done:  # the same retrain, for another budget
            shutil.copytree(done[record["id"]], out)
            runio.write_json(out / rundir.CONFIG, config)
        else:
            runio.write_json(out / rundir.CONFIG, config)
            retrain(cfg, space, split, out, record, minutes(record) if cfg.final_minutes is not None else None, log)
        done[record["id"]] = out

    entries = plan(completed, cfg.budgets, size, cfg.finalists)
    by_id = {r["id"]: r for r in completed}
    taken = {}  # trial id -> the budget directory that holds it retrained
    for entry in entries:
        kb = entry["budget_kb"]
        if entry["trial_id"] is None:
            log(f"frontier {name(kb)}: {entry['reason']}")
            continue
        config = sub_config(run_dir, cfg, kb)
        record = by_id[entry["trial_id"]]
        if len(entry["finalists"]) > 1:
            record = final(entry, [by_id[i] for i in entry["finalists"]], run_dir, config, ensure, size, log)
        if record["id"] in taken:
            entry["dir"] = taken[record["id"]]
            log(f"frontier {name(kb)}: trial {record['id']}, as for {Path(entry['dir']).name}")
            continue
        entry["dir"] = taken[record["id"]] = f"frontier/{name(kb)}"
        out = run_dir / entry["dir"]
        log(f"frontier {name(kb)}: trial {record['id']} (val_accuracy {record['val_accuracy']:.4f}, "
            f"{record['params']:,} parameters, flash form {entry['flash_bytes']:,} bytes)")
        ensure(out, record, config)  # a finalist: copied from where it was retrained
        entry["val_accuracy"] = rundir.best(out)["val_accuracy"]
    for entry in entries:  # a budget that reuses a smaller one's model has its figures too
        if entry["trial_id"] is not None and "val_accuracy" not in entry:
            entry["val_accuracy"] = rundir.best(run_dir / entry["dir"])["val_accuracy"]
    doc = {"budgets_kb": sorted(set(cfg.budgets)), "entries": entries}
    runio.write_json(run_dir / rundir.FRONTIER, doc)
    return doc


def finalist_dir(run_dir: Path, budget_kb: float, trial_id: str) -> Path:
    return run_dir / "frontier" / "finalists" / name(budget_kb) / trial_id


def final(entry: dict, records: list[dict], run_dir: Path, config: dict, ensure, size, log: Log) -> dict:
    """The budget's finalists (`records`) retrained, each in its own directory; the best on validation (then fewer
    parameters) becomes the entry's trial. The entry records every finalist's validation accuracy after retraining."""
    kb = entry["budget_kb"]
    log(f"frontier {name(kb)}: {len(records)} finalists, trials " + ", ".join(r["id"] for r in records))
    after = {}
    for record in records:
        out = finalist_dir(run_dir, kb, record["id"])
        ensure(out, record, config)
        after[record["id"]] = rundir.best(out)["val_accuracy"]
    best = max(records, key=lambda r: (after[r["id"]], -r["params"]))
    log(f"frontier {name(kb)}: trial {best['id']} retrained best (" + ", ".join(
        f"{i} {v:.4f}" for i, v in after.items()) + ")")
    # A searched winner beat every start: the best start that fits is a finalist and lost after retraining, and
    # the others scored lower in the search.
    entry.update(trial_id=best["id"], flash_bytes=size(best), est_flash_bytes=best["est_flash_bytes"],
                 params=best["params"], search_val_accuracy=best["val_accuracy"], start=bool(best.get("start")),
                 searched_beat_starts=not best.get("start"), finalist_val_accuracy=after)
    return best
