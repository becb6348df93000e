"""A search spread over processes or machines, on Keras Tuner's own chief/worker engine.

    tune --chief HOST:PORT                  runs the oracle (Keras Tuner's gRPC OracleServicer);
                                            when the search ends, writes trials.json and best.keras
    tune --worker HOST:PORT --worker-id W   asks the chief for trials and trains them
    tune --workers N                        a chief and N workers on 127.0.0.1, as one command

Keras Tuner's own chief loop waits for every worker it has ever seen, so one dead
worker hangs it, and it polls every 20 s. This chief serves the same servicer but
ends by itself: a worker that dies is started again once under the same id (Keras
Tuner hands it the same trial, which runs again); if it dies again, or for a
remote worker silent far longer than any trial took, its trial is recorded as failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import fields, replace
from pathlib import Path

import grpc
from keras_tuner.engine import trial as trial_module

from mnist_opt import runio, workarounds
from mnist_opt.errors import InputError
from mnist_opt.tuning import pareto
from mnist_opt.tuning.config import CLI_HIDDEN, TuneConfig
from mnist_opt.tuning.search import search
from mnist_opt.tuning.limits import Measures
from mnist_opt.tuning.tune import Log, TuneResult, check_measures, finish, start
from mnist_opt.tuning.tuners import make_tuner

TICK = 0.2  # seconds between the chief's checks
RESTARTS = 1  # a worker that dies is started again this many times, then its trial is failed
SILENT_FACTOR, SILENT_MIN = 3, 600  # remote workers: silent for 3x the longest trial (10 min at least) = gone


def parse_address(text: str, option: str, any_port: bool = False) -> tuple[str, int]:
    """HOST:PORT; with `any_port`, port 0 (the system picks a free one) is allowed."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not (0 if any_port else 1) <= int(port) < 65536:
        raise InputError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8470")
    return host, int(port)


def _set_role(tuner_id: str, host: str, port: int) -> None:
    """Keras Tuner reads its role from these variables when a tuner is made."""
    os.environ.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=str(port))


def worker(cfg: TuneConfig, address: str, worker_id: str, log: Log = lambda line: None,
           measures: Measures | None = None) -> dict:
    """Run trials handed out by the chief at `address` until it says stop. Returns counts per status.

    `measures`: as for `tuning.tune.tune`, needed with an arena limit (each trial's arena is checked where it runs).
    """
    host, port = parse_address(address, "--worker")
    if not worker_id or worker_id.startswith("chief") or "/" in worker_id:
        raise InputError(f"--worker-id {worker_id!r}: give each worker a name of its own, e.g. worker0")
    _set_role(worker_id, host, port)
    space, split, run_dir = start(replace(cfg, overwrite=False), write=False)  # a worker never clears a run
    records = search(cfg, space, split, run_dir, log, trials_path=run_dir / "workers" / f"{worker_id}.json",
                     measures=measures)
    return {s: sum(r["status"] == s for r in records) for s in ("completed", "failed", "skipped")}


def chief(cfg: TuneConfig, address: str, log: Log = lambda line: None, workers: int = 0,
          measures: Measures | None = None) -> TuneResult:
    """Serve the oracle until the search is over, then retrain the best trial like a one-process search.

    With `workers`, also start that many worker processes on this machine and watch them.
    `measures`: as for `tuning.tune.tune`.
    """
    host, port = parse_address(address, "--chief", any_port=True)
    check_measures(cfg, measures)
    workarounds.require("keras-tuner-chief")  # before the run directory is touched (`start` probes the rest)
    _set_role("chief", host, port)
    space, split, run_dir = start(cfg)
    tuner = make_tuner(cfg, space, run_dir, measures)
    tuner.setup(cfg, split, run_dir, log, measures=measures)
    oracle = tuner.oracle
    oracle.verbose = 0  # its display: the chief logs the trials itself
    tuner.save()

    service = workarounds.OracleService(oracle)
    # One thread: the Pareto oracle's promotion swaps scores while it chooses (workarounds.hyperband_promotes_by).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    service.add_to(server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise InputError(f"--chief {address}: cannot listen there (port taken, or not this machine's "
                         "address); pick another port")
    server.start()
    log(f"chief: oracle on {host}:{bound}; workers join with "
        f"`mnist-opt tune <same options> --worker {host}:{bound} --worker-id NAME`")
    pool = Workers(cfg, workers, f"{host}:{bound}", log) if workers else None
    failed: dict[str, str] = {}
    first_seen: dict[str, float] = {}
    try:
        while not service.over():
            time.sleep(TICK)
            if pool:
                gone = pool.check()
            else:  # remote workers: only once no trials are left to hand out does a silent one hold things up
                gone = silent_workers(oracle, run_dir, first_seen) if service.stopping else []
            for tuner_id, message in gone:
                failed.update(fail(oracle, tuner_id, message))
            if pool and pool.all_exited() and not workarounds.ongoing_trials(oracle):
                break  # every worker ended (each stops itself after repeated failures)
    except BaseException:  # Ctrl-C or a crash: the workers go too; a rerun resumes from the oracle's state
        if pool:
            pool.kill()
        raise
    finally:
        server.stop(grace=2)
    if pool:
        pool.stop()
    # Keras Tuner's end_trial saves the oracle before it drops the trial from the running ones, so the state on
    # disk still holds the last trial to end as running, and a rerun would run it again: saved once more here.
    oracle.save()
    records = pareto.annotate(collect(tuner, run_dir, failed), cfg.objectives)
    runio.write_json(run_dir / "trials.json", records)
    log(f"chief: search over, {len(records)} trials")
    return finish(cfg, space, split, run_dir, records, log, measures)


def fail(oracle, tuner_id: str, message: str) -> dict:
    """End `tuner_id`'s trial as failed and forget the worker, so the chief can finish."""
    trial = workarounds.ongoing_trials(oracle).get(tuner_id)
    workarounds.forget_worker(oracle, tuner_id)
    if trial is None:
        return {}
    trial.status, trial.message = trial_module.TrialStatus.FAILED, message
    oracle.end_trial(trial)
    return {trial.trial_id: message}


def silent_workers(oracle, run_dir: Path, first_seen: dict[str, float]) -> list[tuple[str, str]]:
    """Remote workers still on a trial far longer than any trial took, after the last one was handed out: gone.

    A chief cannot see a remote worker's process; a worker that died leaves its trial open for good.
    """
    if not workarounds.ongoing_trials(oracle):
        return []
    ended = [r.get("seconds") or 0 for r in _worker_records(run_dir).values()]
    limit = max(SILENT_MIN, SILENT_FACTOR * max(ended, default=0))
    now = time.time()
    gone = []
    for tuner_id, trial in list(workarounds.ongoing_trials(oracle).items()):
        began = first_seen.setdefault(trial.trial_id, now)
        if now - began > limit:
            gone.append((tuner_id, f"worker {tuner_id} sent no result for {now - began:.0f} s after the last "
                                   "trial was handed out; trial given up"))
    return gone


def _worker_records(run_dir: Path) -> dict[str, dict]:
    """Every worker's trial records by trial id, each with the name of the worker that ran it."""
    records = {}
    for path in sorted((run_dir / "workers").glob("*.json")):
        records.update({r["id"]: {**r, "worker": path.stem} for r in runio.read_json(path)})
    return records


def collect(tuner, run_dir: Path, failed: dict[str, str]) -> list[dict]:
    """trials.json for the whole search: each worker's own record where the run directory is shared,
    else what the oracle knows (hyperparameters, score, status)."""
    detailed = _worker_records(run_dir)
    records = []
    for trial_id in sorted(tuner.oracle.trials, key=int):
        trial = tuner.oracle.trials[trial_id]
        record = detailed.get(trial_id)
        if record is None or trial_id in failed:
            record = {**tuner.record(trial, seconds=None), "worker": record and record["worker"]}
            if trial_id in failed:
                record["error"] = failed[trial_id]
        records.append(record)
    return records


# TuneConfig fields a worker is not given: it never clears a run, and the chief alone retrains and reports (the
# device profile is the report's: the limits it set are passed as themselves).
NOT_FOR_WORKERS = ("overwrite", "search_minutes", "final_minutes", "budgets", "device")


def worker_command(c: TuneConfig, address: str, name: str, threads: int) -> list[str]:
    """The `mnist-opt tune --worker` command line of worker `name`, with the chief's search settings.

    Built from TuneConfig's fields, each `--field-name` on the command line (tests/test_cli.py
    checks that `tune` has an option for every field not in CLI_HIDDEN), so none is forgotten.
    """
    args = [sys.executable, "-m", "mnist_opt", "tune"]
    for f in fields(c):
        value = getattr(c, f.name)
        if f.name in NOT_FOR_WORKERS or f.name in CLI_HIDDEN or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        args += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, text]
    return args + ["--worker", address, "--worker-id", name, "--threads", str(threads)]


class Workers:
    """N worker processes on this machine: started, streamed as one view, restarted once if they die."""

    def __init__(self, cfg: TuneConfig, n: int, address: str, log: Log):
        self.cfg, self.address, self.log = cfg, address, log
        self.threads = max(1, (os.cpu_count() or 1) // n)  # the cores, divided between the workers
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts = {f"worker{i}": 0 for i in range(n)}
        self.done: set[str] = set()
        for name in self.restarts:
            self.spawn(name)

    def spawn(self, name: str) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1")
        for key in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
            env.pop(key, None)  # the worker sets its own from --worker
        command = worker_command(self.cfg, self.address, name, self.threads)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.procs[name] = proc
        self.log(f"chief: started {name} (pid {proc.pid}, {self.threads} threads)")
        threading.Thread(target=self._stream, args=(name, proc), daemon=True).start()

    def _stream(self, name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.log(f"[{name}] {line.rstrip()}")

    def check(self) -> list[tuple[str, str]]:
        """Workers that died: restarted once (same id, so the same trial), then given up."""
        gone = []
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or name in self.done:
                continue
            if code == 0:
                self.done.add(name)
                continue
            if self.restarts[name] < RESTARTS:
                self.restarts[name] += 1
                self.log(f"chief: {name} exited with {code}; starting it again (its trial runs again)")
                self.spawn(name)
            else:
                self.done.add(name)
                gone.append((name, f"worker {name} died twice (exit {code}); trial recorded as failed"))
        return gone

    def all_exited(self) -> bool:
        return all(p.poll() is not None for p in self.procs.values())

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
