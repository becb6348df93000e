"""The frontier: one model per size budget, chosen on validation, exported and measured within its budget."""

import json

import pytest
from typer.testing import CliRunner

from conftest import FRONTIER_BUDGETS, litert_accuracy
from mnist_opt import rundir
from mnist_opt.cli import app
from mnist_opt.workflow import FRONTIER_VARIANTS, configs
from mnist_opt.tuning import frontier
from mnist_opt.tuning.select import merit
from mnist_opt.export.file_size import flash_bytes


def _record(i, acc, est, params=1000):
    return {"id": str(i), "val_accuracy": acc, "est_flash_bytes": est, "params": params}


def test_plan_takes_the_best_trial_whose_exact_size_fits_and_says_why_none_does():
    records = [_record(0, 0.99, 40_000), _record(1, 0.98, 15_000), _record(2, 0.97, 7_000), _record(3, 0.96, 6_000)]
    exact = {"0": 41_000, "1": 16_500, "2": 7_500, "3": 6_100}  # trial 1's estimate fits 16 KB, its file does not
    asked = []

    def size(r):
        asked.append(r["id"])
        return exact[r["id"]]

    entries = frontier.plan(records, (64, 16, 4, 32), size)
    assert [e["budget_kb"] for e in entries] == [4, 16, 32, 64]
    assert entries[0]["trial_id"] is None and "trial 3, is 6,100 bytes" in entries[0]["reason"]
    assert entries[1]["trial_id"] == "2" and entries[1]["flash_bytes"] == 7_500 and entries[1]["dir"] == "frontier/16kb"
    assert entries[2]["trial_id"] == "1" and entries[2]["dir"] == "frontier/32kb"
    assert entries[3]["trial_id"] == "0" and entries[3]["dir"] == "frontier/64kb"
    assert "0" not in asked[:3]  # a trial estimated far over a budget is not converted for it


def test_each_budget_says_what_the_search_added_over_its_starting_points():
    records = [dict(_record(0, 0.98, 7_000), start=True), _record(1, 0.985, 7_500),
               dict(_record(2, 0.99, 15_000), start=True), _record(3, 0.97, 14_000)]
    e8, e16 = frontier.plan(records, (8, 16), lambda r: r["est_flash_bytes"])
    assert (e8["trial_id"], e8["start"], e8["start_val_accuracy"], e8["searched_val_accuracy"]) == ("1", False, 0.98, 0.985)
    assert e8["searched_beat_starts"] is True
    assert (e16["trial_id"], e16["start"], e16["start_val_accuracy"], e16["searched_val_accuracy"]) == ("2", True, 0.99, 0.985)
    assert e16["searched_beat_starts"] is False
    (only,) = frontier.plan(records[1:2], (8,), lambda r: r["est_flash_bytes"])  # no start fits: the search's own
    assert only["start_val_accuracy"] is None and only["searched_beat_starts"] is True


def test_a_larger_budget_with_a_smaller_ones_model_reuses_its_directory():
    records = [_record(0, 0.99, 5_000), _record(1, 0.95, 20_000)]
    entries = frontier.plan(records, (8, 32), lambda r: r["est_flash_bytes"])
    assert [e["trial_id"] for e in entries] == ["0", "0"]
    assert [e["dir"] for e in entries] == ["frontier/8kb", "frontier/8kb"]


def test_finalists_are_each_retrained_once_and_the_best_retrained_one_is_the_budgets(tmp_path, monkeypatch):
    from mnist_opt import runio
    from mnist_opt.tuning.config import TuneConfig

    after = {"0": 0.990, "1": 0.993, "2": 0.995, "3": 0.95}  # validation accuracy after retraining
    calls = []

    def fake_retrain(cfg, space, split, out_dir, best, minutes, log):
        calls.append(best["id"])
        (out_dir / rundir.BEST_MODEL).write_bytes(b"model " + best["id"].encode())
        runio.write_json(out_dir / rundir.BEST_HPARAMS, {"trial_id": best["id"], "hyperparameters": best["hyperparameters"],
                                                        "params": best["params"], "val_accuracy": after[best["id"]]})

    class Sizes:  # the exact flash form: the estimate
        def flash_bytes(self, values, clusters, max_arena=None):
            return values["bytes"]

    monkeypatch.setattr(frontier, "retrain", fake_retrain)
    records = [dict(_record(0, 0.99, 7_000), start=True), _record(1, 0.985, 7_500), _record(2, 0.97, 15_000),
               _record(3, 0.96, 6_000)]
    for r in records:
        r["hyperparameters"] = {"bytes": r["est_flash_bytes"], "n": r["id"]}
    runio.write_json(tmp_path / rundir.CONFIG, {"search": {"space": "frontier"}})
    cfg = TuneConfig(run_dir=str(tmp_path), budgets=(8, 16), finalists=2)

    def finish():
        return frontier.finish(cfg, None, None, tmp_path, records, lambda r: 1.0, Sizes(), lambda line: None)

    e8, e16 = finish()["entries"]
    # 8 KB: trials 0 and 1 fit best; 1 is better retrained. 16 KB: 0 and 1 again (2 scored lower in the search).
    assert (e8["finalists"], e8["trial_id"], e8["dir"], e8["val_accuracy"]) == (["0", "1"], "1", "frontier/8kb", 0.993)
    assert e8["finalist_val_accuracy"] == {"0": 0.990, "1": 0.993} and e8["searched_beat_starts"] is True
    assert (e16["finalists"], e16["trial_id"], e16["dir"]) == (["0", "1"], "1", "frontier/8kb")
    assert sorted(calls) == ["0", "1"]  # each retrained once, whichever budgets it is a finalist of
    assert rundir.best(tmp_path / "frontier/8kb")["trial_id"] == "1"
    assert (tmp_path / "frontier/8kb" / rundir.BEST_MODEL).read_bytes() == b"model 1"
    assert rundir.frontier_dirs(tmp_path) == [(8, tmp_path / "frontier/8kb")]
    calls.clear()
    assert finish()["entries"] == [e8, e16] and calls == []  # a rerun retrains nothing


def test_the_best_start_that_fits_is_always_a_finalist():
    records = [_record(0, 0.99, 7_000), _record(1, 0.985, 7_500), dict(_record(2, 0.97, 6_000), start=True),
               dict(_record(3, 0.96, 5_000), start=True), _record(4, 0.95, 30_000)]
    e8, e32 = frontier.plan(records, (8, 32), lambda r: r["est_flash_bytes"], finalists=2)
    assert e8["finalists"] == ["0", "2"] and e8["trial_id"] == "0"
    (three,) = frontier.plan(records, (8,), lambda r: r["est_flash_bytes"], finalists=3)
    assert three["finalists"] == ["0", "1", "2"]  # already one
    (one,) = frontier.plan(records, (8,), lambda r: r["est_flash_bytes"], finalists=1)
    assert one["finalists"] == ["0"]


def test_the_frontier_preset_spends_its_five_retrains_on_finalists_when_it_has_fewer_budgets():
    assert configs("frontier", "runs/x").tune.finalists == 1
    assert configs("frontier", "runs/x", budgets=(16,)).tune.finalists == 2
    assert configs("frontier", "runs/x", budgets=(8, 16)).tune.finalists == 2
    assert configs("frontier", "runs/x", budgets=(8, 16, 32)).tune.finalists == 1
    assert configs("standard", "runs/x", budgets=(16,)).tune.finalists == 1


def test_budgets_make_a_pareto_run_within_the_largest_budget():
    p = configs("standard", "runs/x", budgets=(32, 8, 16))
    assert (p.tune.tuner, p.tune.budgets, p.tune.max_kb) == ("pareto", (8, 16, 32), 32)
    assert set(p.export.variants) <= set(FRONTIER_VARIANTS)
    assert configs("frontier", "runs/x").tune.budgets == (4, 8, 16, 32, 64)
    assert configs("frontier", "runs/x").export.clusters == configs("frontier", "runs/x").tune.clusters == 16


@pytest.mark.parametrize("value", ["", "x", "0.5", "8,,-1", "nan", "inf"])
def test_bad_budgets_exit_2_and_write_nothing(tmp_path, value):
    for command in (["tune"], ["run"]):
        result = CliRunner().invoke(app, [*command, "--budgets", value, "--run-dir", str(tmp_path / "run")])
        assert result.exit_code == 2, result.output
        assert "--budgets: expected sizes in KB" in result.output
    assert not (tmp_path / "run").exists()


def test_every_budget_has_a_file_within_it_or_a_reason(frontier_run):
    run_dir, output = frontier_run
    doc = json.loads((run_dir / "report.json").read_text())
    assert [r["budget_kb"] for r in doc["frontier"]] == list(FRONTIER_BUDGETS)
    for row in doc["frontier"]:
        if "file" in row:  # the int8 file in LiteRT; its flash form, what the budget counts, in TFLite Micro
            assert (run_dir / row["file"]).stat().st_size == row["int8_bytes"] > row["flash_bytes"]
            assert row["flash_bytes"] <= row["budget_kb"] * 1024
            flash_file = run_dir / row["dir"] / "export" / "micro" / f"{row['variant']}.tflite"
            assert flash_file.stat().st_size == row["flash_bytes"]
            assert row["test_accuracy"] > 0.5 and row["micro_test_accuracy"] > 0.5
            # The budget's file: of its model's files whose flash form fits, the best on validation.
            fits = [f for f in doc["files"] if f["budget_kb"] == row["budget_kb"] and f["flash_bytes"] <= row["budget_kb"] * 1024]
            assert row["variant"] == max(fits, key=lambda f: (f["val_accuracy"], -f["flash_bytes"]))["variant"]
            clustered = next(f for f in doc["files"] if f["budget_kb"] == row["budget_kb"] and f["variant"] == "clustered_int8")
            assert clustered["flash_bytes"] <= row["budget_kb"] * 1024  # what the search counted: it fits
        else:
            assert row["reason"]
    unmet = doc["frontier"][0]
    assert "file" not in unmet and "no finished trial's flash form fits in 3 KB" in unmet["reason"]
    assert "none fits" in output  # the table the command prints names it
    assert any("file" in r for r in doc["frontier"])
    assert (run_dir / "report.html").read_text().count("<img") == 1


def test_frontier_accuracy_equals_an_independent_litert_loop(frontier_run):
    run_dir, _ = frontier_run
    rows = [r for r in json.loads((run_dir / "report.json").read_text())["frontier"] if "file" in r]
    assert rows
    for row in rows:
        assert litert_accuracy(run_dir / row["file"]) == row["test_accuracy"]


def test_each_budgets_trial_is_the_best_on_validation_that_fits(frontier_run):
    from mnist_opt import data
    from mnist_opt.tuning import inputs

    run_dir, output = frontier_run
    doc = rundir.frontier(run_dir)
    trials = [t for t in json.loads((run_dir / "trials.json").read_text()) if t["status"] == "completed"]
    representative = inputs.to_inputs(data.load_split(0).x_train[:20]).numpy()
    for e in doc["entries"]:
        if e["trial_id"] is None:
            continue
        best = rundir.best(run_dir / e["dir"])
        assert best["trial_id"] == e["trial_id"] and e["flash_bytes"] <= e["budget_kb"] * 1024
        chosen = next(t for t in trials if t["id"] == e["trial_id"])
        for t in trials:  # every trial better on validation is over the budget
            if merit(t) > merit(chosen) and t["est_flash_bytes"] <= e["budget_kb"] * 1024 * frontier.ESTIMATE_SLACK:
                assert flash_bytes(t["hyperparameters"], representative, 16) > e["budget_kb"] * 1024
    assert not (run_dir / rundir.BEST_MODEL).exists()  # a frontier run has no single winner
    assert "retraining trial" in output


def test_a_rerun_retrains_nothing_and_keeps_the_exports(frontier_run):
    run_dir, _ = frontier_run
    dirs = rundir.frontier_dirs(run_dir)
    stamps = {sub: ((sub / "best.keras").stat().st_mtime_ns, (sub / "export" / "int8.tflite").stat().st_mtime_ns)
              for _, sub in dirs}
    tune_args = json.loads((run_dir / "config.json").read_text())["tune"]
    result = CliRunner().invoke(app, [
        "tune", "--space", "tiny", "--tuner", "pareto", "--max-trials", "6", "--max-epochs", "2", "--train-subset",
        "2000", "--final-epochs", "1", "--budgets", ",".join(map(str, FRONTIER_BUDGETS)), "--clusters", "16", "--seed",
        str(tune_args["seed"]), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "retraining trial" not in result.output and result.output.count("already retrained") == len(dirs)
    for _, sub in dirs:
        assert ((sub / "best.keras").stat().st_mtime_ns, (sub / "export" / "int8.tflite").stat().st_mtime_ns) \
            == stamps[sub]


def test_serve_lists_every_budgets_files(frontier_run):
    from mnist_opt.inference.serve import App

    run_dir, _ = frontier_run
    app_ = App(run_dir, latency_runs=5)
    names = set(app_.variants)
    for kb, sub in rundir.frontier_dirs(run_dir):
        assert {f"{kb:g}kb/int8", f"{kb:g}kb/pruned_int8"} <= names
    assert app_.default in names and app_.variants[app_.default].info["quantization"] == "int8"
