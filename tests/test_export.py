import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from typer.testing import CliRunner

from mnist_opt.export.config import VARIANTS
from mnist_opt.cli import app


def test_all_variants_and_manifest_are_written(seed, smoke_export):
    run_dir, output = smoke_export
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert [v["name"] for v in manifest["variants"]] == list(VARIANTS)
    for entry in manifest["variants"]:
        data = (run_dir / "export" / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["gzip_bytes"] == len(gzip.compress(data, 9))
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["agreement_with_source"] >= 0.98, entry["name"]
        interpreter = Interpreter(model_path=str(run_dir / "export" / entry["file"]))
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [4, 28, 28, 1])
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], np.zeros((4, 28, 28, 1), detail["dtype"]))
        interpreter.invoke()
        assert interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape == (4, 10)
    assert "wrote" in output


def test_int8_variants_are_int8_smaller_and_pruned_ones_sparse(seed, smoke_export):
    run_dir, _ = smoke_export
    variants = {v["name"]: v for v in json.loads((run_dir / "export" / "manifest.json").read_text())["variants"]}
    for name in ("int8", "pruned_int8", "pruned_qat_int8"):
        assert variants[name]["input"]["dtype"] == variants[name]["output"]["dtype"] == "int8"
        assert variants[name]["bytes"] < variants["float32"]["bytes"]
    target = variants["pruned_int8"]["settings"]["sparsity"]
    for name in ("pruned_float32", "pruned_int8", "pruned_qat_int8"):
        assert abs(variants[name]["sparsity"] - target) <= 0.02, name
    assert variants["pruned_float32"]["gzip_bytes"] < 0.6 * variants["float32"]["gzip_bytes"]
    assert variants["pruned_int8"]["gzip_bytes"] < 0.8 * variants["int8"]["gzip_bytes"]


def test_clustered_files_hold_few_values_per_kernel_and_compress_better(seed, smoke_export):
    """Measured on the files: each large kernel's output channels hold at most --clusters int8 values."""
    run_dir, _ = smoke_export
    variants = {v["name"]: v for v in json.loads((run_dir / "export" / "manifest.json").read_text())["variants"]}
    clusters = variants["clustered_int8"]["settings"]["clusters"]
    assert max(k["distinct"] for k in variants["int8"]["kernels"].values()) > clusters  # the check can fail
    for name in ("clustered_int8", "pruned_clustered_qat_int8"):
        assert variants[name]["kernels"], name
        assert all(k["distinct"] <= clusters for k in variants[name]["kernels"].values()), variants[name]["kernels"]
    assert variants["clustered_int8"]["gzip_bytes"] < 0.85 * variants["int8"]["gzip_bytes"]
    # PCQAT kept the pruning's zeros in the file (tfmot alone lost them in every conv after the first)
    pruned = variants["pruned_int8"]["file_sparsity"]
    assert abs(variants["pruned_clustered_qat_int8"]["file_sparsity"] - pruned) <= 0.02
    assert all(k["zeros"] >= pruned - 0.05 for k in variants["pruned_clustered_qat_int8"]["kernels"].values())


def test_every_int8_file_has_its_tflite_micro_check_and_cpp_source(smoke_export):
    run_dir, _ = smoke_export
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    int8 = [v for v in manifest["variants"] if v["quantization"] == "int8"]
    assert {v["name"] for v in int8} == {n for n in VARIANTS if n.endswith("int8")}
    readme = (run_dir / "export" / "micro" / "README.md").read_text()
    for v in int8:
        m = v["micro"]
        assert m["runs"] and m["arena_bytes"] > 0 and "CONV_2D" in m["ops"], v["name"]
        header = (run_dir / "export" / m["header"]).read_text()
        assert f"kArenaBytesMeasured = {m['arena_bytes']};" in header
        assert f"kInputZeroPoint = {v['input']['zero_point']};" in header
        assert f"`{v['name']}.h`" in readme
        # The C array holds the flash form, byte for byte; the header names its sha256 and its arena.
        flash_form = (run_dir / "export" / m["file"]).read_bytes()
        assert len(flash_form) == m["bytes"] < v["bytes"] and hashlib.sha256(flash_form).hexdigest() == m["sha256"]
        assert _array_bytes((run_dir / "export" / m["source"]).read_text()) == flash_form
        assert m["sha256"] in header
        if m["lut"]:  # LUT-compressed: less flash, more RAM than its twin
            twin = m["uncompressed"]
            assert m["bytes"] < twin["bytes"] and m["arena_bytes"] > twin["arena_bytes"], v["name"]
        else:
            assert m["uncompressed"] is None, v["name"]
        if v["source"] in ("clustered", "pruned_clustered_qat"):  # 16 clusters: at most 16 values a channel, 4 bits
            assert m["lut"] and all(k["bits"] <= 4 and k["distinct"] <= 16 for k in m["lut"]), v["name"]
        elif v["source"] == "tuned":
            assert m["lut"] == [], v["name"]  # a trained kernel's channels have too many values to pay
    assert not any("micro" in v for v in manifest["variants"] if v["quantization"] != "int8")
    listed = {Path(f).name for v in int8 for f in (v["micro"]["file"], (v["micro"]["uncompressed"] or {}).get("file")) if f}
    assert {p.name for p in (run_dir / "export" / "micro").glob("*.tflite")} == listed


def _array_bytes(source: str) -> bytes:
    """The bytes of a generated .cc file's kModel array."""
    body = source[source.index("kModel[] = {") + len("kModel[] = {"):source.index("};")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_partial_export_keeps_unchanged_entries(seed, smoke_export):
    run_dir, _ = smoke_export
    result = CliRunner().invoke(app, ["export", str(run_dir), "--variants", "float16"])
    assert result.exit_code == 0, result.output
    names = [v["name"] for v in json.loads((run_dir / "export" / "manifest.json").read_text())["variants"]]
    assert names == list(VARIANTS)


@pytest.mark.parametrize("args, expected", [
    (["{missing}"], "does not exist"),
    (["{empty}"], "no finished tuning (best.keras, best_hparams.json, config.json missing)"),
    (["{run}", "--sparsity", "1.0"], "--sparsity: expected a fraction in [0, 1), got 1.0"),
    (["{run}", "--sparsity", "-0.1"], "--sparsity: expected a fraction in [0, 1)"),
    (["{run}", "--variants", "int8,int4"], "unknown variant int4"),
    (["{run}", "--clusters", "1"], "--clusters: expected 2 to 128 shared values per kernel"),
    (["{run}", "--clusters", "129"], "look-up tables index at most 7 bits), got 129"),
])
def test_bad_input_exits_2_and_writes_nothing(seed, smoke_run, tmp_path, args, expected):
    run_dir, _ = smoke_run
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "run": run_dir}
    before = sorted(p.name for p in run_dir.rglob("*"))
    result = CliRunner().invoke(app, ["export", *[a.format(**paths) for a in args]])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert sorted(p.name for p in run_dir.rglob("*")) == before
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_full_disk_exits_1_leaves_no_partial_file_and_a_rerun_completes(seed, smoke_run, tmp_path, monkeypatch):
    import errno
    import shutil

    from mnist_opt import runio

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run[0], run_dir, ignore=shutil.ignore_patterns("export"))
    command = ["export", str(run_dir), "--variants", "float32,int8"]
    real, calls = runio.write_bytes, []

    def full_after_one(path, data):  # the disk fills while the second file is written
        calls.append(path)
        if len(calls) == 2:
            with runio.atomic_path(path) as tmp:
                tmp.write_bytes(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
        real(path, data)

    monkeypatch.setattr(runio, "write_bytes", full_after_one)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1 and "No space left on device" in result.output, result.output
    assert "Traceback" not in result.output
    export_dir = run_dir / "export"
    assert sorted(p.name for p in export_dir.iterdir()) == ["float32.tflite"]  # whole, and nothing else
    monkeypatch.setattr(runio, "write_bytes", real)  # space freed
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert [v["name"] for v in manifest["variants"]] == ["float32", "int8"]


def test_micro_keeps_only_the_sources_of_listed_variants_that_run(tmp_path):
    from mnist_opt.export.export import tidy_micro

    micro_dir = tmp_path / "micro"
    micro_dir.mkdir()
    for name in ("int8.h", "int8.cc", "int8.tflite", "gone.h", "gone.cc", "gone.tflite", "gone.uncompressed.tflite",
                 "fails.h", "fails.cc", "fails.tflite", "README.md"):
        (micro_dir / name).write_text("old")
    figures = {"ops": ["CONV_2D"], "arena_bytes": 1024, "bytes": 90, "file": "micro/int8.tflite",
               "header": "micro/int8.h", "source": "micro/int8.cc", "uncompressed": None}
    variants = [{"name": "int8", "bytes": 100, "micro": {"runs": True, **figures}},
                {"name": "fails", "bytes": 100, "micro": {"runs": False, "ops": [], "arena_bytes": None, "file": None}},
                {"name": "float32", "bytes": 400}]
    tidy_micro(micro_dir, variants, [str(i) for i in range(10)])
    assert sorted(p.name for p in micro_dir.iterdir()) == ["README.md", "int8.cc", "int8.h", "int8.tflite"]
    assert "`int8.h`" in (micro_dir / "README.md").read_text()
    tidy_micro(micro_dir, variants[1:], [str(i) for i in range(10)])  # none runs any more: no sources, no README
    assert list(micro_dir.iterdir()) == []


def test_no_microcontroller_file_is_over_the_arena_limit(smoke_export, tmp_path):
    """Under `tune --max-arena-kb`, a LUT-compressed form over the limit gives way to the uncompressed one, and a
    file whose every form is over it gets no TFLite Micro files; every file written is within it (measured)."""
    from mnist_opt import data
    from mnist_opt.export import micro
    from mnist_opt.export.export import micro_files
    from mnist_opt.tuning import inputs

    run_dir, _ = smoke_export
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    v = next(v for v in manifest["variants"] if v.get("micro", {}).get("lut"))  # compressed: more arena than its twin
    model, names = (run_dir / "export" / v["file"]).read_bytes(), manifest["class_names"]
    images = inputs.to_inputs(data.load_split(0).x_val[:50]).numpy()
    lean = v["micro"]["uncompressed"]["arena_bytes"]
    assert lean < v["micro"]["arena_bytes"]

    m = micro_files(v["name"], model, v, tmp_path / "a", 1000, images, names, max_arena=lean)["micro"]
    assert m["runs"] and m["arena_bytes"] == lean and m["lut"] == [] and m["uncompressed"] is None
    assert any("--max-arena-kb" in d for d in m["dropped"])
    assert (tmp_path / "a" / m["file"]).read_bytes() == (run_dir / "export" / v["micro"]["uncompressed"]["file"]).read_bytes()
    written = list((tmp_path / "a" / "micro").glob("*.tflite"))
    assert written and all(micro.arena_bytes(f.read_bytes()) <= lean for f in written)

    m = micro_files(v["name"], model, v, tmp_path / "b", 1000, images, names, max_arena=lean - 16)["micro"]
    assert not m["runs"] and m["file"] is None and "--max-arena-kb" in m["error"]
    assert not (tmp_path / "b" / "micro").exists()
