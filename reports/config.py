"""Settings of the report stage: every default in one place, each with its reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ReportConfig:
    run_dir: str
    latency_runs: int = 1000  # batch-1 invocations timed per model: enough for a stable p95
    warmup_runs: int = 100  # untimed first calls: allocation, caches, XNNPACK set-up
    baseline_epochs: int = 10  # when baseline.keras is missing: what the original project trained for
    baseline_images: int | None = None  # of the train split's images it trains on; None: all (the quick preset: fewer)
    accuracy_window: float = 0.1  # points: the recommended variant is the smallest file this close to the best
    micro_images: int | None = None  # test images each int8 file runs on in TFLite Micro (ms each); None: all
    max_kb: float | None = None  # the user's size budget for the recommendation; None: the tuning run's --max-kb
    data: str | None = None  # where the run's data is now, if it moved; None: where config.json says it was

    def to_dict(self) -> dict:
        return asdict(self)
