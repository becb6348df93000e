"""The report stage: a run's models measured on the test set, in the form the run has.

A run tuned with --budgets is reported budget by budget, with the frontier across them
(`reports.budgets`); any other run, variant by variant (`reports.variants`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mnist_opt import rundir
from mnist_opt.reports import budgets, variants
from mnist_opt.reports.config import ReportConfig

Log = Callable[[str], None]


def report(cfg: ReportConfig, log: Log = lambda line: None) -> dict:
    """Measure every model of the run on the test set; write report.json, report.md, report.html."""
    if rundir.is_frontier(Path(cfg.run_dir)):
        return budgets.report(cfg, log)
    return variants.report(cfg, log)
