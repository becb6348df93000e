"""The run directory's contract: the files each stage leaves, what makes a stage finished, and readers.

    RUN/config.json             tune: its settings ("tune"), what decides its results ("search"), the data
                                ("data": source, form, shape, class names, content hash, test split), packages
    RUN/trials.json             tune: every trial
    RUN/best.keras              tune: the retrained winner
    RUN/best_hparams.json       tune: the winner's hyperparameters; written last, so tune is finished
    RUN/export/manifest.json    export: the variants' files and figures, and the settings that made them
    RUN/report.json             report (and .md, .html, baseline.keras)
    RUN/frontier.json           tune with --budgets: each budget's model, in RUN/frontier/<K>kb/, a run
                                directory of its own (no best.keras at the top: tuned = frontier.json)

Settings are compared without `run_dir`: the same run addressed by another path is the same run.
"""

from __future__ import annotations

from pathlib import Path

from mnist_opt import runio
from mnist_opt.errors import RunDirError

CONFIG = "config.json"
TRIALS = "trials.json"
BEST_MODEL = "best.keras"
BEST_HPARAMS = "best_hparams.json"
MANIFEST = "export/manifest.json"
REPORT = "report.json"
FRONTIER = "frontier.json"

TUNED = (BEST_MODEL, BEST_HPARAMS, CONFIG)  # a finished tune
EXPORTED = (*TUNED, MANIFEST)  # a finished export


def missing(run: Path, needed: tuple[str, ...]) -> list[str]:
    return [name for name in needed if not (Path(run) / name).is_file()]


def require(run: Path, needed: tuple[str, ...], fix: str, what: str = "unfinished") -> None:
    """Raise RunDirError naming the directory, what is missing and `fix`, unless all of `needed` is there."""
    run = Path(run)
    if not run.is_dir():
        raise RunDirError(f"run directory {run}: does not exist; {fix}")
    if gone := missing(run, needed):
        raise RunDirError(f"run directory {run}: {what} ({', '.join(gone)} missing); {fix}")


def _read(run: Path, name: str, keys: tuple[str, ...]) -> dict:
    try:
        doc = runio.read_json(Path(run) / name)
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise RunDirError(f"run directory {run}: {name} cannot be read ({exc}); "
                          "rerun the stage that writes it with this --run-dir") from exc
    if not isinstance(doc, dict) or (absent := [k for k in keys if k not in doc]):
        what = "not a JSON object" if not isinstance(doc, dict) else f"no {', '.join(absent)}"
        raise RunDirError(f"run directory {run}: {name} is damaged ({what}); "
                          f"rerun the stage that writes it with this --run-dir")
    return doc


def tune_settings(run: Path) -> dict:
    """The TuneConfig fields the run was tuned with (config.json's "tune")."""
    return _read(run, CONFIG, ("tune",))["tune"]


def data_info(run: Path) -> dict | None:
    """The run's data as recorded (config.json's "data"); None for a run from before it was recorded (MNIST)."""
    return _read(run, CONFIG, ("tune",)).get("data")


def data_sha256(run: Path) -> str | None:
    """The content hash of the data the run was tuned on (config.json's "search"), or None if it has none."""
    return _read(run, CONFIG, ("tune",)).get("search", {}).get("data_sha256")


def run_of(path: Path) -> Path | None:
    """The run directory a model file lies in: the nearest folder above it with a config.json; None if none."""
    for folder in Path(path).resolve().parents:
        if (folder / CONFIG).is_file():
            return folder
    return None


def best(run: Path) -> dict:
    """The winner: its trial id, hyperparameters, parameters, validation accuracy (best_hparams.json)."""
    return _read(run, BEST_HPARAMS, ("trial_id", "hyperparameters", "params", "val_accuracy"))


def frontier(run: Path) -> dict:
    """Each size budget's model (frontier.json): its budget, trial and directory, or why none fits."""
    return _read(run, FRONTIER, ("budgets_kb", "entries"))


def is_frontier(run: Path) -> bool:
    """Whether the run was tuned with --budgets: one model per budget under RUN/frontier/, none at the top."""
    return (Path(run) / FRONTIER).is_file()


def frontier_dirs(run: Path) -> list[tuple[float, Path]]:
    """(budget in KB, run directory) of each budget with a model of its own, smallest budget first."""
    entries = frontier(run)["entries"]
    return [(e["budget_kb"], Path(run) / e["dir"]) for e in entries
            if e["dir"] is not None and e["dir"].endswith(f"/{e['budget_kb']:g}kb")]


def manifest(run: Path) -> dict:
    """The export's variants and settings (export/manifest.json)."""
    return _read(run, MANIFEST, ("variants", "settings"))


def same_settings(saved: dict, current: dict) -> bool:
    """Whether two stage settings (`Config.to_dict()`) are the same, wherever the run directory is."""
    drop = lambda d: {k: v for k, v in d.items() if k != "run_dir"}  # noqa: E731
    return drop(saved) == drop(current)
