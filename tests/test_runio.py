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
