"""Resident memory across a search: 20 small trials, RSS recorded after each one.

    python benchmarks/memory.py            # writes benchmarks/results/memory-<date>.json

Each trial's record in trials.json carries the RSS of the process that ran it
(`rss_mib`). Keras Tuner clears the Keras session before each build and the
search drops the gradient functions each trial registered
(`mnist_opt.workarounds.released_custom_gradients`); RSS should stay level.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

TRIALS = 20


def main() -> dict:
    from mnist_opt.runtime import quiet_tensorflow

    quiet_tensorflow()
    from mnist_opt import data
    from mnist_opt.tuning import space
    from mnist_opt.tuning.config import TuneConfig
    from mnist_opt.tuning.search import search
    from mnist_opt.tuning.tune import prepare_run_dir

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TuneConfig(space="tiny", tuner="random", max_trials=TRIALS, max_epochs=1, train_subset=1000,
                         run_dir=str(Path(tmp) / "run"))
        start = time.time()
        records = search(cfg, space.load(cfg.space), data.load_split(cfg.seed), prepare_run_dir(cfg, {}), print)
    rss = [r["rss_mib"] for r in records]
    result = {"benchmark": "memory", "trials": TRIALS, "rss_mib_per_trial": rss,
              "rss_after_trial_1_mib": rss[0], "rss_after_trial_20_mib": rss[-1],
              "growth_trial_5_to_20_mib": round(rss[-1] - rss[4], 1),
              "growth_per_trial_mib": round((rss[-1] - rss[0]) / (len(rss) - 1), 2),
              "seconds": round(time.time() - start, 1)}
    out = Path(__file__).parent / "results" / f"memory-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mib_per_trial"}), f"-> {out}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
