"""Resident memory across a search: 20 small trials, RSS recorded after each one.

    python benchmarks/memory.py            # writes benchmarks/results/memory-<date>.json

Keras sessions are cleared between trials (Keras Tuner does it before each
build); RSS should level off after the first trials instead of growing.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

TRIALS = 20


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> dict:
    from mnist_opt.runtime import quiet_tensorflow

    quiet_tensorflow()
    from tuning import data, space
    from tuning.config import TuneConfig
    from tuning.search import prepare_run_dir, search

    rss = []

    def log(line: str) -> None:
        if line.startswith("trial"):
            rss.append(round(rss_mib(), 1))
            print(f"{line.split()[1]:>6}  RSS {rss[-1]:8.1f} MiB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TuneConfig(space="tiny", tuner="random", max_trials=TRIALS, max_epochs=1, train_subset=1000,
                         run_dir=str(Path(tmp) / "run"))
        start = time.time()
        search(cfg, space.load(cfg.space), data.load_split(cfg.seed), prepare_run_dir(cfg, {}), log)
    result = {"benchmark": "memory", "trials": TRIALS, "rss_mib_per_trial": rss,
              "rss_after_trial_1_mib": rss[0], "rss_after_last_trial_mib": rss[-1],
              "growth_trial_5_to_last_mib": round(rss[-1] - rss[min(4, len(rss) - 1)], 1),
              "seconds": round(time.time() - start, 1)}
    out = Path(__file__).parent / "results" / f"memory-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mib_per_trial"}), f"-> {out}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
