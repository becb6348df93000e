"""Keras Tuner's state files in a run directory, checked before a search resumes from them.

Keras Tuner writes `oracle.json`, each `trial_*/trial.json` and each trial's checkpoint in
place, so a kill at the wrong moment can leave one truncated or missing; its reload then fails
with a traceback deep inside Keras Tuner. `check` finds such a file first and says what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

from mnist_opt.errors import RunDirError

CHECKPOINT = "checkpoint.weights.h5"


def check(run_dir: Path, hyperband: bool) -> None:
    """Raise RunDirError naming the first damaged state file under RUN/tuner, if any.

    Hyperband trains promoted trials on from their parent's checkpoint, so there a completed
    trial's checkpoint must be there too; the other tuners never read one back.
    """
    tuner_dir = run_dir / "tuner"
    if not tuner_dir.is_dir():
        return
    documents = [tuner_dir / "oracle.json", *sorted(tuner_dir.glob("trial_*/trial.json"))]
    for path in documents:
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise damaged(run_dir, path, f"not readable JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise damaged(run_dir, path, "not a JSON object")
        if hyperband and path.name == "trial.json" and doc.get("status") == "COMPLETED" \
                and not (path.parent / CHECKPOINT).is_file():
            raise damaged(run_dir, path.parent / CHECKPOINT, "missing; Hyperband trains promoted trials on from it")


def damaged(run_dir: Path, path: Path, why: str) -> RunDirError:
    return RunDirError(
        f"{path}: damaged search state ({why}). The finished trials are listed in {run_dir / 'trials.json'}; "
        "restore the file, or pass --overwrite to start the search again, or choose a new --run-dir")
