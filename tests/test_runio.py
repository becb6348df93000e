import errno
import json

import pytest

from mnist_opt import runio


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


def test_write_json_replaces_the_file_whole(tmp_path):
    path = tmp_path / "doc.json"
    runio.write_json(path, {"a": 1})
    runio.write_json(path, {"a": 2})
    assert runio.read_json(path) == {"a": 2} and _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "doc.json"
    runio.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        runio.write_json(path, {"a": object()})  # not JSON: fails before anything is renamed
    assert json.loads(path.read_text()) == {"a": 1} and _leftovers(tmp_path) == []


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    runio.write_bytes(path, b"old")

    def full(self, data):
        self.open("wb").write(data[:1])  # part of it lands, as on a real full disk
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(type(path), "write_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        runio.write_bytes(path, b"new contents")
    monkeypatch.undo()
    assert path.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_atomic_path_keeps_the_suffix_keras_reads_the_format_from(tmp_path):
    with runio.atomic_path(tmp_path / "best.keras") as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "best.keras").read_bytes() == b"x" and _leftovers(tmp_path) == []


HOLD = """
import sys, time
from mnist_opt import runio
with runio.locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(run_dir):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    from mnist_opt.errors import RunDirError

    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunDirError, match=rf"in use by another mnist-opt process \(pid {proc.pid}\)") as info:
            with runio.locked(tmp_path / "run"):
                pass
        assert info.value.exit_code == 2 and str(tmp_path / "run") in str(info.value)
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    import signal

    proc = _holder(tmp_path / "run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with runio.locked(tmp_path / "run"):
        with runio.locked(tmp_path / "run"):  # nested in one process: shared, not refused
            pass


def test_a_lock_on_a_new_directory_leaves_nothing_when_nothing_was_written(tmp_path):
    with pytest.raises(ValueError):
        with runio.locked(tmp_path / "new"):
            raise ValueError("bad input, refused before writing")
    assert not (tmp_path / "new").exists()
    with runio.locked(tmp_path / "missing", create=False):
        pass
    assert not (tmp_path / "missing").exists()


@pytest.mark.slow
def test_a_second_tune_on_a_busy_run_directory_exits_2_and_the_first_finishes(tmp_path):
    import subprocess
    import sys
    import time

    from typer.testing import CliRunner

    from mnist_opt.cli import app

    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "mnist_opt", "tune", "--space", "tiny", "--tuner", "random",
                              "--max-trials", "2", "--max-epochs", "1", "--train-subset", "500", "--final-epochs", "1",
                              "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "config.json").is_file():  # written under the lock
        time.sleep(0.1)
    for command in (["tune", "--space", "tiny", "--run-dir"], ["run", "--run-dir"], ["export"], ["report"]):
        result = CliRunner().invoke(app, [*command, str(run_dir)])
        assert result.exit_code == 2 and f"pid {first.pid}" in result.output, (command, result.output)
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    assert (run_dir / "best.keras").is_file() and "done: 2 trials completed" in output
