"""Damaged Keras Tuner state: found before a resume, named, and never a finished trial lost."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from mnist_opt.cli import app

pytestmark = pytest.mark.slow  # a Hyperband search for each case: make test-fast leaves them out

SEARCH = ["tune", "--space", "tiny", "--tuner", "hyperband", "--max-trials", "4", "--max-epochs", "3",
          "--train-subset", "500", "--final-epochs", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("state") / "run"
    result = CliRunner().invoke(app, [*SEARCH, "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir


def _truncate(path):
    path.write_text(path.read_text()[: len(path.read_text()) // 2])


def _completed_trial(run_dir):
    return next(p.parent for p in sorted((run_dir / "tuner").glob("trial_*/trial.json"))
                if json.loads(p.read_text())["status"] == "COMPLETED")


@pytest.mark.parametrize("damage, named", [
    (lambda run: _truncate(run / "tuner" / "oracle.json"), lambda run: run / "tuner" / "oracle.json"),
    (lambda run: _truncate(_completed_trial(run) / "trial.json"), lambda run: _completed_trial(run) / "trial.json"),
    (lambda run: (_completed_trial(run) / "checkpoint.weights.h5").unlink(),
     lambda run: _completed_trial(run) / "checkpoint.weights.h5"),
], ids=["truncated-oracle", "truncated-trial", "deleted-checkpoint"])
def test_damaged_state_exits_2_naming_the_file_and_keeps_every_finished_trial(finished, tmp_path, damage, named):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    trials = (run_dir / "trials.json").read_text()
    name = named(run_dir)  # before the damage: a truncated trial.json no longer says it completed
    damage(run_dir)
    result = CliRunner().invoke(app, [*SEARCH, "--run-dir", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert str(name) in result.output and "--overwrite" in result.output and "Traceback" not in result.output
    assert (run_dir / "trials.json").read_text() == trials
