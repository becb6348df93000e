import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import AGREEMENT_IMAGES, litert_accuracy
from mnist_opt.cli import app
from mnist_opt.data import load_test
from mnist_opt.reports.plots import pareto
from mnist_opt.reports.variants import recommendation_rule, recommend
from mnist_opt.tuning.size import ESTIMATE_ERROR


def test_report_accuracies_are_what_the_files_give(seed, quick_run):
    run_dir, _ = quick_run
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["test_images"] == 10000
    rows = {r["name"]: r for r in doc["rows"]}
    exported = [v["name"] for v in json.loads((run_dir / "export" / "manifest.json").read_text())["variants"]]
    assert set(rows) == {"baseline", "tuned", *exported} and "int8" in exported
    for name in exported:
        assert litert_accuracy(run_dir / rows[name]["file"]) == rows[name]["test_accuracy"], name
        assert rows[name]["matches_manifest"] is True


def test_report_rows_are_complete_and_consistent(seed, quick_run):
    run_dir, _ = quick_run
    doc = json.loads((run_dir / "report.json").read_text())
    for r in doc["rows"]:
        assert len(r["per_class_accuracy"]) == 10 and np.array(r["confusion"]).sum() == 10000
        assert r["median_us"] > 0 and r["p95_us"] >= r["median_us"]
        assert (run_dir / r["file"]).stat().st_size == r["bytes"]
        assert len(r["sha256"]) == 64
    rows = {r["name"]: r for r in doc["rows"]}
    assert rows["tuned"]["agreement_with_tuned"] == 1.0
    assert rows["float32"]["size_vs_float32"] == 1.0 and rows["int8"]["size_vs_float32"] < 0.5
    assert doc["recommended"] == recommend(doc["rows"], 0.1)
    assert set(doc["packages"]) >= {"tensorflow", "ai-edge-litert"}
    estimate = doc["flash_size_estimate"]  # what --max-kb checks, against the int8 file's flash form
    assert estimate["flash_bytes"] == rows["int8"]["micro"]["forms"]["flash"]["bytes"]
    assert abs(estimate["error"]) <= ESTIMATE_ERROR
    from mnist_opt.tuning.size import count_macs

    assert doc["macs"] == count_macs(doc["best_hparams"]["hyperparameters"]) > 0  # one figure: every variant's
    assert doc["settings"]["tune"]["device"] is None and not any("device_fit" in r for r in doc["rows"])


def test_int8_rows_carry_tflite_micro_figures_measured_from_the_file(seed, quick_run):
    from mnist_opt.export import litert, micro
    from mnist_opt.inference.model import to_inputs

    run_dir, _ = quick_run
    doc = json.loads((run_dir / "report.json").read_text())
    rows = {r["name"]: r for r in doc["rows"]}
    m = rows["int8"]["micro"]
    assert m["runs"] and m["int8_bytes"] == rows["int8"]["bytes"] and m["images"] == AGREEMENT_IMAGES
    assert m["arena_bytes"] == micro.arena_bytes((run_dir / rows["int8"]["file"]).read_bytes())
    assert m["agreement_with_litert_kernels"] >= 0.999 and m["agreement_with_litert"] >= 0.99
    # two runtimes that disagree on a fraction d of the images differ by at most d in accuracy
    x, y = (a[:m["images"]] for a in load_test())
    model = (run_dir / rows["int8"]["file"]).read_bytes()
    litert_accuracy_there = (litert.predict(model, to_inputs(x)).argmax(1) == y).mean()
    assert abs(m["test_accuracy"] - litert_accuracy_there) <= 1 - m["agreement_with_litert"] + 1e-9
    assert all("micro" not in r for r in doc["rows"] if r["quantization"] != "int8")
    # The flash form, what the C array holds: its own file, arena and accuracy, and the int8 file's outputs.
    f = m["forms"]["flash"]
    flash_file = (run_dir / "export" / "micro" / "int8.tflite").read_bytes()
    assert f["bytes"] == len(flash_file) < rows["int8"]["bytes"] and f["arena_bytes"] == micro.arena_bytes(flash_file)
    assert f["differ"] == 0 and f["test_accuracy"] == m["test_accuracy"]
    table = (run_dir / "report.md").read_text()
    assert f"| {f['bytes']:,} | {f['arena_bytes']:,} | {100 * f['test_accuracy']:.2f} |" in table
    assert f"| int8 | flash (C arrays) | {f['bytes']:,} | {f['arena_bytes']:,} |" in table


def test_tflite_micro_runs_every_test_image_unless_told(quick_run):
    from mnist_opt.reports.variants import micro_scores

    run_dir, _ = quick_run
    model = (run_dir / "export" / "int8.tflite").read_bytes()
    x, y = (a[:AGREEMENT_IMAGES + 200] for a in load_test())
    # "LiteRT's" answers are the labels here: agreeing with them is being right, on the same images
    every = micro_scores(model, {}, x, y, y)
    few = micro_scores(model, {"flash": model}, x, y, y, images=100)
    assert few["forms"]["flash"]["differ"] == 0  # the same file, compared with itself
    assert every["images"] == len(y) and few["images"] == 100
    for m in (every, few):
        assert m["agreement_with_litert"] == m["test_accuracy"]


def test_a_file_tflite_micro_cannot_run_is_named_in_the_table_not_a_crash():
    from mnist_opt.reports.render import micro_cells
    from mnist_opt.reports.variants import micro_line

    form = {"bytes": 1234, "arena_bytes": None, "ops": ["TOPK_V2"], "error": "no kernel", "test_accuracy": None,
            "differ": None}
    row = {"micro": {"runs": False, "int8_bytes": 2000, "arena_bytes": None, "unsupported_ops": ["TOPK_V2"],
                     "error": "TFLite Micro has no kernel for TOPK_V2", "test_accuracy": None, "forms": {"flash": form}}}
    assert micro_cells(row) == ["1,234", "-", "cannot run: TOPK_V2"]
    assert "no kernel for TOPK_V2" in micro_line(row)
    assert micro_cells({"name": "float32"}) == ["-", "-", "-"]


def test_markdown_and_html_are_written_and_self_contained(seed, quick_run):
    run_dir, output = quick_run
    md = (run_dir / "report.md").read_text()
    recommended = json.loads((run_dir / "report.json").read_text())["recommended"]
    assert md.count("** ★ |") == 1 and f"| **{recommended}** ★ |" in md  # the one recommended row, marked
    assert f"★ recommended: **{recommended}**" in md
    for name in ("baseline", "tuned", "int8"):
        assert f"| {name} |" in md or f"| **{name}** ★ |" in md
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "http://" not in page and "https://" not in page
    assert f"report: {run_dir / 'report.html'}" in output
    assert "| model |" in output  # the table, in the terminal
    assert "Flash size estimate made before training" in md and "Flash size estimate made before training" in page


def test_recommendation_is_the_smallest_file_near_the_best():
    rows = [{"name": "a", "kind": "tflite", "test_accuracy": 0.9900, "bytes": 100, "gzip_bytes": 90},
            {"name": "b", "kind": "tflite", "test_accuracy": 0.9892, "bytes": 50, "gzip_bytes": 40},
            {"name": "c", "kind": "tflite", "test_accuracy": 0.9880, "bytes": 10, "gzip_bytes": 9},
            {"name": "k", "kind": "keras", "test_accuracy": 0.9990, "bytes": 1, "gzip_bytes": 1}]
    assert recommend(rows, 0.1) == "b"
    assert recommend(rows, 0.5) == "c"


def test_recommendation_respects_the_size_budget():
    rows = [{"name": "a", "kind": "tflite", "test_accuracy": 0.9900, "bytes": 30 * 1024, "gzip_bytes": 90},
            {"name": "b", "kind": "tflite", "test_accuracy": 0.9850, "bytes": 12 * 1024, "gzip_bytes": 40},
            {"name": "c", "kind": "tflite", "test_accuracy": 0.9700, "bytes": 8 * 1024, "gzip_bytes": 9}]
    assert recommend(rows, 0.1) == "a"
    assert recommend(rows, 0.1, max_kb=16) == "b"  # the best file that fits, not the best overall
    assert recommend(rows, 2.0, max_kb=16) == "c"
    assert recommend(rows, 0.1, max_kb=4) == "c"  # nothing fits: the smallest
    assert "no exported file fits" in recommendation_rule(0.1, 4, rows)
    assert "at most 16 KB" in recommendation_rule(0.1, 16, rows)


def int8_row(name: str, flash: int, arena: int | None) -> dict:
    """A full-integer row as the report measures it: its flash form's bytes and arena."""
    form = {"bytes": flash, "arena_bytes": arena, "test_accuracy": 0.99, "error": None, "differ": 0}
    return {"name": name, "quantization": "int8", "bytes": flash + 500,
            "micro": {"runs": arena is not None, "arena_bytes": arena, "forms": {"flash": form}}}


def test_the_device_table_gives_each_files_fit_margins_and_latency():
    from mnist_opt import devices
    from mnist_opt.reports import render, variants

    device = devices.load("cortex-m4f")  # 128 KB flash, 32 KB arena for the model, 80 MHz
    rows = [int8_row("int8", 100_000, 20_000), int8_row("big", 140_000, 40_000), int8_row("broken", 9_000, None),
            {"name": "float32", "quantization": "none", "bytes": 180_000}]
    assert [variants.flash_arena_bytes(r) for r in rows] == [20_000, 40_000, None, None]
    macs = 1_000_000
    for r in rows[:3]:
        r["device_fit"] = device.fit(variants.flash_bytes(r), variants.flash_arena_bytes(r), macs)
    ok, big, broken = (render.device_cells(r["name"], r["device_fit"]) for r in rows[:3])
    assert ok[:3] == ["int8", "yes", "100,000 / 131,072 (+31,072)"] and ok[3] == "20,000 / 32,768 (+12,768)"
    assert ok[4] == f"1,000,000 / {device.limits()['max_macs']:,} (+{device.limits()['max_macs'] - macs:,})"
    assert ok[5:] == ["2,250.0", "85.0"]  # 1 M MACs x 180 and 6.8 cycles at 80 MHz
    assert big[1:4] == ["no", "140,000 / 131,072 (-8,928)", "40,000 / 32,768 (-7,232)"]
    assert broken[1] == "no" and broken[3] == "not measured"

    doc = {"rows": rows, "settings": {"tune": {"device": device.to_dict()}}, "macs": macs}
    section = variants.device_section(doc)
    assert section.startswith("Fits cortex-m4f: Arm Cortex-M4F") and "estimate" in section
    assert "| int8 | yes |" in section and "| big | no |" in section and "float32" not in section
    assert "50% of the flash" in render.device_note(device.to_dict()) and "6.8 with CMSIS-NN" in section
    assert variants.macs_text(doc) == "1,000,000 multiply-accumulates per image (every variant's), "
    assert variants.device_section({**doc, "settings": {"tune": {"device": None}}}) == ""


def test_the_frontier_carries_each_budgets_device_fit():
    from mnist_opt import devices
    from mnist_opt.reports import budgets

    fit = devices.load("cortex-m0plus").fit(9_000, 3_000, 50_000)
    row = {**int8_row("int8", 9_000, 3_000), "file": "export/int8.tflite", "gzip_bytes": 1, "params": 10,
           "test_accuracy": 0.9, "median_us": 5.0, "sparsity": 0.0, "val_accuracy": 0.95, "device_fit": fit}
    (f,) = budgets.int8_files(16, {"rows": [row], "macs": 50_000})
    assert f["device_fit"] == fit and f["macs"] == 50_000
    entries = [{"budget_kb": 16, "dir": "frontier/16kb", "trial_id": "3", "val_accuracy": 0.95, "reason": None}]
    (frontier_row,) = budgets.frontier_rows(entries, {"frontier/16kb": [f]})
    assert frontier_row["device_fit"] == fit
    doc = {"frontier": [frontier_row], "settings": {"tune": {"device": devices.load("cortex-m0plus").to_dict()}}}
    section = budgets.device_section(doc)
    assert "Fits cortex-m0plus" in section and "| 16 KB: frontier/16kb/export/int8.tflite | yes |" in section
    assert budgets.device_section({**doc, "settings": {"tune": {}}}) == ""


def test_pareto_front():
    assert pareto([(1, 0.9), (2, 0.95), (3, 0.94), (4, 0.99)]) == [0, 1, 3]


def test_report_on_an_unfinished_run_exits_2(seed, quick_run, tmp_path):
    run_dir, _ = quick_run  # finished, but this copy has no export
    (tmp_path / "run").mkdir()
    for name in ("best.keras", "best_hparams.json", "config.json"):
        (tmp_path / "run" / name).write_bytes((run_dir / name).read_bytes())
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "export/manifest.json missing" in result.output
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.keras", "best_hparams.json", "config.json"]
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_report_max_kb_moves_the_recommendation_into_the_budget(seed, quick_run, tmp_path):
    """`report --max-kb` under the recommended file's size recommends a file that fits."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(quick_run[0], run_dir)
    before = json.loads((run_dir / "report.json").read_text())
    from mnist_opt.reports.variants import flash_bytes

    sizes = sorted(flash_bytes(r) for r in before["rows"] if r["kind"] == "tflite")
    budget = (sizes[0] + 1) / 1024  # only the smallest file fits
    result = CliRunner().invoke(app, ["report", str(run_dir), "--latency-runs", "5", "--max-kb", f"{budget}",
                                      "--micro-images", str(AGREEMENT_IMAGES)])
    assert result.exit_code == 0, result.output
    doc = json.loads((run_dir / "report.json").read_text())
    chosen = next(r for r in doc["rows"] if r["name"] == doc["recommended"])
    assert flash_bytes(chosen) <= budget * 1024 and doc["max_kb"] == pytest.approx(budget)
    assert "size budget" in doc["recommendation_rule"]
    micro = [r["micro"] for r in doc["rows"] if "micro" in r]  # TFLite Micro on the first images only, said so
    assert micro and all(m["images"] == AGREEMENT_IMAGES for m in micro)
    assert f"on the first {AGREEMENT_IMAGES:,} of them" in (run_dir / "report.md").read_text()


def test_run_again_skips_finished_stages_wherever_the_run_was_moved(seed, quick_run, tmp_path):
    import shutil

    run_dir = tmp_path / "moved"
    shutil.copytree(quick_run[0], run_dir)  # the settings saved name the old path
    before = (run_dir / "best.keras").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["run", "--preset", "quick", "--run-dir", str(run_dir), "--seed", "1234",
                                      "--micro-images", str(AGREEMENT_IMAGES)])
    assert result.exit_code == 0, result.output
    assert "[1/3] tune: already done" in result.output and "[2/3] export: already done" in result.output
    assert (run_dir / "best.keras").stat().st_mtime_ns == before


def test_the_frontier_plot_colours_trials_by_arena_where_it_was_measured():
    from mnist_opt.reports import plots

    trials = [{"status": "completed", "est_flash_bytes": 4096 * k, "val_accuracy": 0.97 + 0.005 * k,
               "arena_bytes": 3000 * k} for k in (1, 2, 3)]
    rows = [{"budget_kb": 16}]
    coloured = plots.frontier(trials, [], rows)
    grey = plots.frontier([{**t, "arena_bytes": None} for t in trials], [], rows)
    assert coloured.startswith(b"\x89PNG") and grey.startswith(b"\x89PNG") and coloured != grey
