"""Distributed search on Keras Tuner's chief/worker engine, with real processes on loopback."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import keras
import pytest
from typer.testing import CliRunner

from mnist_opt import runtime
from mnist_opt.cli import app
from mnist_opt.tuning import distributed
from mnist_opt.tuning.config import TuneConfig
from mnist_opt.tuning.distributed import SILENT_MIN, parse_address, silent_workers
from mnist_opt.errors import InputError

SEARCH = ["--space", "tiny", "--tuner", "random", "--max-trials", "4", "--max-epochs", "1", "--final-epochs", "1",
          "--seed", "1234"]


def mnist_opt(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnist_opt", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


class Output:
    """A process's output, read in the background; `wait_for` a line."""

    def __init__(self, proc):
        self.lines, self.proc = [], proc
        threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def wait_for(self, text, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not seen in:\n{''.join(self.lines)}")

    def text(self):
        return "".join(self.lines)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def check_complete_run(run_dir, n=4):
    trials = json.loads((run_dir / "trials.json").read_text())
    assert sorted(int(t["id"]) for t in trials) == list(range(n))  # every trial exactly once
    assert all(t["status"] == "completed" for t in trials), trials
    ran = [r["id"] for p in sorted((run_dir / "workers").glob("*.json")) for r in json.loads(p.read_text())]
    assert sorted(ran, key=int) == [str(i) for i in range(n)]  # each trained by exactly one worker
    best = json.loads((run_dir / "best_hparams.json").read_text())
    assert best["trial_id"] in {t["id"] for t in trials}
    model = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
    assert model.count_params() == best["params"]
    return trials


@pytest.mark.slow
def test_chief_and_two_workers_on_loopback(tmp_path):
    run_dir = tmp_path / "run"
    address = f"127.0.0.1:{free_port()}"
    common = [*SEARCH, "--train-subset", "500", "--run-dir", str(run_dir)]
    chief = mnist_opt("tune", *common, "--chief", address)
    workers = [mnist_opt("tune", *common, "--worker", address, "--worker-id", f"w{i}", "--threads", "1")
               for i in range(2)]
    outputs = [Output(p) for p in (chief, *workers)]
    try:
        codes = [p.wait(600) for p in (chief, *workers)]
    finally:
        for p in (chief, *workers):
            p.kill()
    assert codes == [0, 0, 0], "\n---\n".join(o.text() for o in outputs)
    trials = check_complete_run(run_dir)
    assert {t["worker"] for t in trials} <= {"w0", "w1"}
    assert "done: 4 trials completed" in outputs[0].text()
    assert not any(line.strip().isdigit() for o in outputs for line in o.lines)  # Keras Tuner's stray prints


@pytest.mark.slow
def test_a_killed_worker_does_not_hang_the_search(tmp_path):
    """SIGKILL one worker in the middle of its trial: it is started again, the trial runs again, all exit."""
    run_dir = tmp_path / "run"
    proc = mnist_opt("tune", *SEARCH, "--max-epochs", "2", "--train-subset", "2000", "--run-dir", str(run_dir),
                     "--workers", "2")
    out = Output(proc)
    try:
        pid = int(out.wait_for("started worker0 (pid").split("pid ")[1].split(",")[0])
        oracle = run_dir / "tuner" / "oracle.json"
        deadline = time.time() + 300
        while time.time() < deadline:  # until worker0 holds a trial
            try:
                if "worker0" in json.loads(oracle.read_text()).get("ongoing_trials", {}):
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.2)
        time.sleep(3)  # well into its training
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(600) == 0, out.text()
    finally:
        proc.kill()
    text = out.text()
    assert "worker0 exited with -9; starting it again" in text
    check_complete_run(run_dir)
    pids = [int(line.split("pid ")[1].split(",")[0]) for line in out.lines if "(pid " in line]
    assert len(pids) == 3 and not any(alive(p) for p in pids)  # worker0, its restart, worker1: all gone


@pytest.mark.parametrize("args, words", [
    (["--chief", "localhost"], "expected HOST:PORT"),
    (["--worker", "127.0.0.1:1"], "--worker-id"),
    (["--chief", "127.0.0.1:1", "--workers", "2"], "use one of"),
    (["--worker", "127.0.0.1:99999", "--worker-id", "w"], "expected HOST:PORT"),
    (["--workers", "2", "--search-minutes", "5"], "--search-minutes works in one process"),
])
def test_bad_distributed_options_exit_2(tmp_path, args, words):
    result = CliRunner().invoke(app, ["tune", "--run-dir", str(tmp_path / "run"), *args])
    assert result.exit_code == 2 and words in result.output
    assert not (tmp_path / "run").exists()


def test_parse_address():
    assert parse_address("10.0.0.5:8470", "--chief") == ("10.0.0.5", 8470)
    assert parse_address("127.0.0.1:0", "--chief", any_port=True) == ("127.0.0.1", 0)
    with pytest.raises(InputError):
        parse_address("127.0.0.1:0", "--worker")


def test_a_silent_remote_worker_is_given_up(tmp_path):
    """A chief cannot see a remote worker die: a trial left open far longer than any trial took is failed."""
    oracle = SimpleNamespace(ongoing_trials={"w0": SimpleNamespace(trial_id="3")})
    first_seen = {}
    assert silent_workers(oracle, tmp_path, first_seen) == []  # just noticed
    first_seen["3"] -= SILENT_MIN - 5
    assert silent_workers(oracle, tmp_path, first_seen) == []  # not yet
    first_seen["3"] -= 10
    (gone,) = silent_workers(oracle, tmp_path, first_seen)
    assert gone[0] == "w0" and "trial given up" in gone[1]


DEVICE_LIMITS = dict(max_arena_kb=6.5, max_macs=400000, objectives=("accuracy", "flash", "arena"),
                     device={"name": "board"})


@pytest.mark.parametrize("starts, limits", [(True, {}), (False, {}), (True, DEVICE_LIMITS)],
                         ids=["starts", "no-starts", "device-limits"])
def test_workers_are_started_with_the_chiefs_search_settings(tmp_path, monkeypatch, starts, limits):
    """What `--workers N` runs, read back by the CLI: the same search settings as the chief's (the arena and MAC
    limits and the objectives included; the device profile is the chief's report's, and not a search setting)."""
    cfg = TuneConfig(space="tiny", tuner="pareto" if limits else "random", starts=starts, max_trials=3, max_epochs=2,
                     train_subset=700, seed=5, max_params=9000, max_kb=20.0, final_epochs=2,
                     run_dir=str(tmp_path / "run"), **limits)
    seen = []

    def worker(c, address, worker_id, log, measures=None):
        seen.append((c, address, worker_id))
        assert (measures is not None) == bool(limits)  # a worker checks each trial's arena where it runs it
        return {"completed": 0}

    monkeypatch.setattr(distributed, "worker", worker)
    monkeypatch.setattr(runtime, "set_threads", lambda threads: None)  # this process's TensorFlow is shared
    command = distributed.worker_command(cfg, "127.0.0.1:8470", "worker0", 1)
    assert command[1:3] == ["-m", "mnist_opt"]
    result = CliRunner().invoke(app, command[3:])
    assert result.exit_code == 0, result.output
    (c, address, worker_id), = seen
    assert c.search_settings() == cfg.search_settings() and c.run_dir == cfg.run_dir
    assert (address, worker_id) == ("127.0.0.1:8470", "worker0")
    assert "--device" not in command and c.device is None


@pytest.mark.slow
def test_a_pareto_search_runs_with_two_workers_and_the_chief_retrains_each_budget(tmp_path):
    from mnist_opt.tuning import pareto

    run_dir = tmp_path / "run"
    proc = mnist_opt("tune", "--space", "tiny", "--tuner", "pareto", "--max-trials", "6", "--max-epochs", "3",
                     "--train-subset", "500", "--final-epochs", "1", "--seed", "1234", "--budgets", "12",
                     "--run-dir", str(run_dir), "--workers", "2")
    out = Output(proc)
    try:
        assert proc.wait(600) == 0, out.text()
    finally:
        proc.kill()
    trials = json.loads((run_dir / "trials.json").read_text())
    assert len(trials) >= 6 and all(t["status"] == "completed" for t in trials)
    assert {t["worker"] for t in trials} <= {"worker0", "worker1"}
    assert all(0.0 <= t["val_accuracy"] <= 1.0 for t in trials)  # no promotion key left in place of a score
    assert [t["pareto_rank"] for t in trials] == [t["pareto_rank"] for t in pareto.annotate(trials)]
    # Which trials two workers get depends on who asks first: promotions are checked in test_oracles.py.
    (entry,) = json.loads((run_dir / "frontier.json").read_text())["entries"]
    assert entry["trial_id"] in {t["id"] for t in trials} and entry["flash_bytes"] <= 12 * 1024
    assert (run_dir / entry["dir"] / "best.keras").is_file()


@pytest.mark.slow
def test_two_workers_keep_the_arena_and_mac_limits_and_a_rerun_resumes(tmp_path):
    """Each worker checks the limits where it runs a trial: no completed trial is over either, every trial
    records its arena and MACs, and the same command again resumes the finished search instead of redoing it."""
    run_dir = tmp_path / "run"
    args = ("tune", "--space", "tiny", "--tuner", "pareto", "--max-trials", "5", "--max-epochs", "1",
            "--train-subset", "500", "--final-epochs", "1", "--seed", "7", "--max-arena-kb", "6", "--max-macs",
            "300000", "--run-dir", str(run_dir), "--workers", "2")
    for attempt in range(2):
        proc = mnist_opt(*args)
        out = Output(proc)
        try:
            assert proc.wait(600) == 0, out.text()
        finally:
            proc.kill()
        trials = json.loads((run_dir / "trials.json").read_text())
        if attempt == 0:
            first = trials
    assert trials == first and "resuming" in out.text()
    done = [t for t in trials if t["status"] == "completed"]
    assert done and all(t["arena_bytes"] <= 6 * 1024 and t["macs"] <= 300000 for t in done)
    assert all(t["arena_bytes"] is not None and t["macs"] > 0 for t in trials)
