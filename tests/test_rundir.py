import hashlib
import json
from dataclasses import replace

import pytest

from mnist_opt.export.config import ExportConfig
from mnist_opt import rundir, runio
from mnist_opt.errors import RunDirError
from mnist_opt.workflow import export_done, tuning_done
from mnist_opt.tuning.config import TuneConfig


def _tuned(run, cfg: TuneConfig):
    run.mkdir(parents=True)
    for name in (rundir.BEST_MODEL, rundir.BEST_HPARAMS):
        (run / name).write_text("{}")
    runio.write_json(run / rundir.CONFIG, {"tune": cfg.to_dict()})


def test_a_run_addressed_by_another_path_is_the_same_run(tmp_path):
    """A finished stage is found whatever path names the directory: a symlink, a relative path."""
    run = tmp_path / "runs" / "a"
    cfg = TuneConfig(run_dir=str(run), space="tiny")
    _tuned(run, cfg)
    (tmp_path / "link").symlink_to(run)
    assert tuning_done(cfg) and tuning_done(replace(cfg, run_dir=str(tmp_path / "link")))
    assert not tuning_done(replace(cfg, run_dir=str(tmp_path / "link"), seed=1))  # other settings: not done

    export = ExportConfig(run_dir=str(run), variants=("int8",))
    assert not export_done(export)  # nothing exported yet
    (run / "export").mkdir()
    (run / "export" / "int8.tflite").write_bytes(b"x")
    entry = {"name": "int8", "file": "int8.tflite", "sha256": hashlib.sha256(b"x").hexdigest()}
    runio.write_json(run / rundir.MANIFEST, {"variants": [entry], "settings": export.to_dict()})
    assert export_done(replace(export, run_dir=str(tmp_path / "link")))
    assert not export_done(replace(export, run_dir=str(tmp_path / "link"), sparsity=0.5))


def test_require_names_the_directory_the_missing_files_and_the_fix(tmp_path):
    with pytest.raises(RunDirError, match="does not exist; do this"):
        rundir.require(tmp_path / "nope", rundir.TUNED, "do this")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / rundir.CONFIG).write_text("{}")
    with pytest.raises(RunDirError, match=r"unfinished \(best.keras, best_hparams.json missing\); do this"):
        rundir.require(tmp_path / "run", rundir.TUNED, "do this")


@pytest.mark.parametrize("text, expected", [
    ('{"trial_id": "0001", "hyperpa', "best_hparams.json cannot be read"),
    ("[1, 2]", "best_hparams.json is damaged \\(not a JSON object\\)"),
    ('{"trial_id": "0001"}', "best_hparams.json is damaged \\(no hyperparameters, params, val_accuracy\\)"),
])
def test_a_damaged_document_is_named_not_a_traceback(tmp_path, text, expected):
    (tmp_path / rundir.BEST_HPARAMS).write_text(text)
    with pytest.raises(RunDirError, match=expected):
        rundir.best(tmp_path)
    good = {"trial_id": "0001", "hyperparameters": {}, "params": 1, "val_accuracy": 0.5}
    (tmp_path / rundir.BEST_HPARAMS).write_text(json.dumps(good))
    assert rundir.best(tmp_path) == good
