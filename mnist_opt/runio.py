"""Run directories: every file appears whole or not at all, and one process works in a directory at a time."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def check_writable(directory: str | os.PathLike) -> None:
    """Create `directory` if needed and prove a file can be written there, or raise RunDirError."""
    from mnist_opt.errors import RunDirError

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise RunDirError(f"run directory {directory}: not writable ({exc.strerror}); "
                          "pass a directory you can write to") from exc


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The temporary name keeps the suffix, because Keras picks the format of
    `model.save` from it. On any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))


_held: dict[Path, int] = {}  # run directories this process holds, and how many `locked` blocks hold each


@contextmanager
def locked(run_dir: str | os.PathLike, create: bool = True) -> Iterator[None]:
    """Hold `run_dir` for this process: a second process that asks gets RunDirError naming the holder.

    An OS lock (flock) on the directory itself: it goes with the process however the process
    ends, kill -9 included, so no stale lock is ever left, and no file is written for it.
    Nested blocks in one process share the lock (`run` holds it across tune, export and report).
    A missing directory is made for the block (and removed after it if it is still empty); with
    `create=False`, or for a path that is not a directory, the block runs unlocked instead, for
    the stage to refuse with its own message.
    """
    from mnist_opt.errors import RunDirError

    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        _held[run_dir] += 1
        try:
            yield
        finally:
            _held[run_dir] -= 1
        return
    created = not run_dir.exists()
    if (created and not create) or (run_dir.exists() and not run_dir.is_dir()):
        yield
        return
    check_writable(run_dir)
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(f"run directory {run_dir}: in use by another mnist-opt process (pid {holder(fd)}); "
                              "wait for it to finish, or choose another --run-dir") from None
        _held[run_dir] = 1
        try:
            yield
        finally:
            del _held[run_dir]
            if created and not any(run_dir.iterdir()):  # refused input: leave nothing behind
                run_dir.rmdir()
    finally:
        os.close(fd)  # releases the flock


def holder(fd: int) -> str:
    """The pid holding a flock on the file behind `fd`, from /proc/locks (Linux), or "unknown"."""
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        fields = line.split()
        if "FLOCK" in fields and len(fields) >= 6 and fields[5] == device and fields[4].isdigit():
            return fields[4]
    return "unknown"
