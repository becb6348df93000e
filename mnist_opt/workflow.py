"""tune -> export -> report in one go, with presets. Finished stages are not run again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mnist_opt.export.config import DEFAULT_CLUSTERS, ExportConfig
from mnist_opt import rundir
from mnist_opt.reports.config import ReportConfig
from mnist_opt.tuning.config import ADDED_FIELDS, TuneConfig

Log = Callable[[str], None]


@dataclass(frozen=True)
class Preset:
    tune: TuneConfig
    export: ExportConfig
    report: ReportConfig


# A frontier run's variants: the int8 file and the clustered one, whose flash forms the budgets count, and the
# float file (the report's reference row). Pruning saves no flash: TFLite Micro stores zeros as bytes.
FRONTIER_VARIANTS = ("float32", "int8", "clustered_int8")
# The frontier preset retrains one model per budget, five in all. A frontier run with fewer budgets spends those
# retrains on finalists, up to MAX_FINALISTS a budget: each budget's best designs are retrained and the best kept,
# since the search ranks designs on short trials, which favour those that learn fast (tuning.frontier.finish).
FRONTIER_RETRAINS = 5
MAX_FINALISTS = 2

PRESETS = {
    # A sound model in under 3 minutes on 2 cores: the quick space's starting point as the one trial
    # (a draw could be a wider model that fits fewer epochs), retrained with the recipe for 3 epochs,
    # the unpruned variants only (pruning needs more fine-tuning than fits here), the report's
    # baseline trained on 10,000 images and 200 timed calls per model instead of 1,000.
    "quick": Preset(
        TuneConfig(space="quick", tuner="random", max_trials=1, max_epochs=1, train_subset=3000, final_epochs=3,
                   final_minutes=2.0),
        ExportConfig(run_dir="", variants=("float32", "dynamic_range", "int8")),
        ReportConfig(run_dir="", baseline_epochs=1, baseline_images=10000, latency_runs=200, warmup_runs=20)),
    # The README's main job, in 20 minutes on 2 cores without bfloat16 units: a short search whose
    # starting points are known-good designs, the winner retrained with the full recipe for as many
    # of 20 epochs as fit in 9 minutes, short fine-tunes for the pruned and clustered variants. A winner must fit
    # half of final_epochs in final_minutes (tuning.select.winner): at 30, the first starting point was
    # passed over for a weaker model (docs/recipe.md). Models whose int8
    # file would pass 64 KB are skipped unless --max-kb says otherwise.
    "standard": Preset(TuneConfig(train_subset=10000, final_epochs=20, search_minutes=4, final_minutes=9, max_kb=64),
                       ExportConfig(run_dir="", prune_epochs=2, qat_epochs=1, cluster_epochs=1, train_subset=20000),
                       ReportConfig(run_dir="", baseline_epochs=3)),
    # The best accuracy, in under an hour: the wide space (up to 96 filters a block) from its
    # 87k-parameter starting point, 6 minutes of Hyperband, the winner retrained for the 50 epochs of
    # its schedule or what fits in 40 minutes, fine-tunes on 20k images.
    "full": Preset(
        TuneConfig(space="wide", max_trials=60, train_subset=24000, final_epochs=50, search_minutes=6,
                   final_minutes=40),
        ExportConfig(run_dir="", prune_epochs=4, qat_epochs=2, train_subset=20000),
        ReportConfig(run_dir="")),
    # The accuracy-size frontier (#29): a search for the Pareto front of validation accuracy and int8
    # size over the frontier space, whose starting points are known-good designs near each budget; then
    # each budget's best model retrained with the recipe and exported (int8, pruned, QAT, clustered).
    # Sizes count the clustered variant's flash form (16 values a kernel: 4-bit indices), so each budget holds
    # a model about twice as large as its int8 file would allow.
    "frontier": Preset(
        TuneConfig(space="frontier", tuner="pareto", budgets=(4, 8, 16, 32, 64), max_kb=64, clusters=16,
                   train_subset=10000, final_epochs=100, search_minutes=12, final_minutes=7),
        ExportConfig(run_dir="", variants=FRONTIER_VARIANTS, clusters=16, cluster_epochs=2, train_subset=20000),
        ReportConfig(run_dir="", baseline_epochs=3, latency_runs=200, warmup_runs=20)),
}


def configs(preset: str, run_dir: str, seed: int | None = None, max_kb: float | None = None,
            budgets: tuple[float, ...] | None = None, micro_images: int | None = None,
            source: dict | None = None, limits: dict | None = None) -> Preset:
    """The preset's settings for this run; `budgets` makes it a frontier run (Pareto search, one model per budget).

    `source`: the data, as TuneConfig's `data`, `image_size` and `skip_bad_images` (None: MNIST). `limits`: the
    device options, as TuneConfig's `max_arena_kb`, `max_macs`, `objectives` and `device`.
    """
    p = PRESETS[preset]
    tune = replace(p.tune, run_dir=run_dir, seed=p.tune.seed if seed is None else seed,
                   max_kb=p.tune.max_kb if max_kb is None else max_kb, **(source or {}), **(limits or {}))
    if budgets:  # the search skips models over the largest budget (or --max-kb, if the user gave one)
        tune = replace(tune, tuner="pareto", budgets=tuple(sorted(set(budgets))),
                       max_kb=max(budgets) if max_kb is None else max_kb)
    if tune.budgets and preset == "frontier":
        tune = replace(tune, finalists=max(1, min(MAX_FINALISTS, FRONTIER_RETRAINS // len(tune.budgets))))
    # Clusters as the sizes were searched, resolved here so that a rerun finds the same export settings.
    export = replace(p.export, run_dir=run_dir, clusters=tune.clusters or p.export.clusters or DEFAULT_CLUSTERS)
    if tune.budgets and preset != "frontier":
        export = replace(export, variants=tuple(v for v in export.variants if v in FRONTIER_VARIANTS))
    return Preset(tune, export, replace(p.report, run_dir=run_dir, micro_images=micro_images))


def tuning_done(cfg: TuneConfig) -> bool:
    run = Path(cfg.run_dir)
    if cfg.budgets:  # frontier.json is written last, after every budget's retrain, for these budgets
        return (not rundir.missing(run, (rundir.FRONTIER, rundir.CONFIG))
                and rundir.same_settings(ADDED_FIELDS | rundir.tune_settings(run), cfg.to_dict())
                and rundir.frontier(run)["budgets_kb"] == sorted(cfg.budgets))
    return (not rundir.missing(run, rundir.TUNED)
            and rundir.same_settings(ADDED_FIELDS | rundir.tune_settings(run), cfg.to_dict()))


def export_done(cfg: ExportConfig) -> bool:
    from mnist_opt.export.export import previous_entries

    run = Path(cfg.run_dir)
    if rundir.missing(run, rundir.EXPORTED) or not rundir.same_settings(rundir.manifest(run)["settings"], cfg.to_dict()):
        return False
    return {e["name"] for e in previous_entries(run / "export")} == set(cfg.variants)


def measures(cfg: TuneConfig):
    """What a search with `cfg` measures a design's exact flash form and arena with: the export stage's, for a
    frontier's budgets and an arena limit or objective; None otherwise (so a plain search does not load the converter)."""
    from mnist_opt.tuning.limits import Measures, needs_measures

    if not needs_measures(cfg):
        return None
    from mnist_opt.export.file_size import arena_bytes, flash_bytes

    return Measures(flash_bytes, arena_bytes)


def tune(cfg: TuneConfig, log: Log = lambda line: None):
    """The tuning stage, given the export stage's exact flash form and arena of a design."""
    from mnist_opt.tuning.tune import tune as run_tune

    return run_tune(cfg, log, measures(cfg))


def chief(cfg: TuneConfig, address: str, log: Log = lambda line: None, workers: int = 0):
    """A distributed search's chief (`tuning.distributed.chief`), given the measures as `tune` is."""
    from mnist_opt.tuning.distributed import chief as run_chief

    return run_chief(cfg, address, log, workers, measures(cfg))


def worker(cfg: TuneConfig, address: str, worker_id: str, log: Log = lambda line: None) -> dict:
    """A distributed search's worker (`tuning.distributed.worker`), given the measures as `tune` is."""
    from mnist_opt.tuning.distributed import worker as run_worker

    return run_worker(cfg, address, worker_id, log, measures(cfg))


def run(preset: str, run_dir: str, seed: int | None = None, log: Log = lambda line: None,
        max_kb: float | None = None, budgets: tuple[float, ...] | None = None, micro_images: int | None = None,
        source: dict | None = None, limits: dict | None = None) -> dict:
    """The whole toolkit: search, export, report. Returns the report document.

    With budgets (or the frontier preset), the search is for the accuracy-size front, and each budget's
    model is exported and reported in RUN/frontier/<K>kb/; the run's report is the frontier.
    """
    from mnist_opt.export.export import export
    from mnist_opt.reports.report import report

    cfg = configs(preset, run_dir, seed, max_kb, budgets, micro_images, source, limits)
    # 1. Tune (a finished search with the same settings is kept; an unfinished one resumes).
    if tuning_done(cfg.tune):
        log(f"[1/3] tune: already done in {run_dir}")
    else:
        log(f"[1/3] tune ({preset})")
        tune(cfg.tune, log)
    # 2. Export (each budget's model, for a frontier run).
    targets = [cfg.export] if not cfg.tune.budgets else [
        replace(cfg.export, run_dir=str(sub)) for _, sub in rundir.frontier_dirs(Path(run_dir))]
    for export_cfg in targets:
        if export_done(export_cfg):
            log(f"[2/3] export: already done in {export_cfg.run_dir}/export")
        else:
            log(f"[2/3] export {export_cfg.run_dir}")
            export(export_cfg, log)
    # 3. Report: always measured afresh.
    log("[3/3] report")
    return report(cfg.report, log)
