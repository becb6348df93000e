"""The benchmark's part registry and command line, and how it scores the search and hypervolume parts.

The curves are made up; the parts themselves take minutes to hours and run only in `benchmarks/run.py`.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str, path: Path):
    """A benchmark script as a module (registered, as dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("bench_run", BENCHMARKS / "run.py")
hv = _load("bench_hv", BENCHMARKS / "hypervolume.py")


def test_every_part_is_declared_with_a_summary_a_record_and_a_runner():
    assert bench.PARTS and any(part.default for part in bench.PARTS.values())
    for name, part in bench.PARTS.items():
        assert part.name == name
        for text in (part.summary, part.records):  # one line each, and a cell of the README's table
            assert text.strip() and "\n" not in text and "|" not in text, (name, text)
        assert callable(part.run)
        inspect.signature(part.run).bind(bench.Settings(), Path("work"))  # run(settings, scratch directory)


def test_help_lists_every_part_from_the_registry(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for name, part in bench.PARTS.items():
        assert any(line.split()[:1] == [name + "*" * part.default] and line.endswith(part.summary) for line in lines), name
    default = bench.make_parser().parse_args([]).parts
    assert bench.select(default) == tuple(part for part in bench.PARTS.values() if part.default)


@pytest.mark.parametrize("parts, message", [
    ("nope", "unknown part 'nope'"),
    ("throughput,nope,predikt", "unknown parts 'nope', 'predikt'"),
    ("quick,,standard", "unknown part ''"),
    ("quick,quick", "'quick' named more than once"),
])
def test_a_bad_part_is_refused_with_the_known_parts_before_anything_runs_or_is_written(
        parts, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--parts", parts, "--record", "refused"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if "unknown" in message:
        assert "known parts: " + ", ".join(bench.PARTS) in err
    assert list(tmp_path.iterdir()) == []


def test_the_registry_drives_what_runs_and_what_is_recorded(tmp_path, monkeypatch, capsys):
    import mnist_opt.runtime

    monkeypatch.setattr(mnist_opt.runtime, "quiet_tensorflow", lambda: None)  # the fake parts need no TensorFlow
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    for name in ("fake", "other"):
        monkeypatch.setitem(bench.PARTS, name, bench.Part(
            name, f"{name}: a part of this test", "`seeds`", lambda settings, work: {"seeds": settings.preset_seeds}))
    assert bench.main(["--parts", "fake", "--preset-seeds", "3,4", "--record", "r"]) == 0
    assert bench.main(["--parts", "other", "--record", "r"]) == 0  # parts run separately add up to one record
    record = json.loads((tmp_path / "r.json").read_text())
    assert {k for k in record if k not in ("date", "machine", "precision", "targets")} == {"fake", "other"}
    assert record["fake"]["seeds"] == [3, 4] and record["other"]["seeds"] == [0]
    for entry in (record["fake"], record["other"]):
        assert set(entry) == {"seeds", "commit", "machine", "precision"}
    assert (tmp_path / "r.md").read_text() == bench.summary(record)
    assert "benchmark: other ..." in capsys.readouterr().out


def test_the_readme_table_of_parts_is_the_registrys():
    table = bench.parts_table()
    assert table in (BENCHMARKS / "README.md").read_text(), (
        "benchmarks/README.md's table of parts differs from benchmarks/run.py's PARTS; replace it with:\n" + table)


# Three runs a side, 10 minutes each: (seconds at a trial's end, its val_accuracy).
PROJECT = {"0": [(5, 0.95), (60, 0.98), (300, 0.991)],
           "1": [(6, 0.96), (90, 0.985), (320, 0.9905)],
           "2": [(5, 0.94), (100, 0.982)]}
RANDOM = {"1": [(40, 0.981), (240, 0.992)],
          "2": [(50, 0.983), (150, 0.986)],
          "3": [(45, 0.98), (170, 0.985)]}


def score(random_ended: dict) -> dict:
    return bench.score_search(PROJECT, RANDOM, 10.0, {"project": dict.fromkeys(PROJECT, True), "random": random_ended})


def test_a_level_both_reach_is_a_ratio_of_median_times():
    s = score(dict.fromkeys(RANDOM, True))
    t = s["seconds_to"]["0.98"]
    assert (t["project_median"], t["random_median"]) == (90, 45)
    assert bench.search_ratio(t, 10.0) == (2.0, "ratio")
    assert not bench.ratio_met(bench.search_ratio(t, 10.0))
    assert s["target_val_accuracy"] == 0.986  # medians of the bests: project 0.9905, RandomSearch 0.986


def test_a_level_randomsearch_ends_without_is_met_when_the_project_reaches_it():
    t = score(dict.fromkeys(RANDOM, True))["seconds_to"]["0.99"]
    assert t["random_median"] is None and t["random_never"]
    ratio = bench.search_ratio(t, 10.0)
    assert ratio == (None, "never") and bench.ratio_met(ratio)
    assert "never" in bench.ratio_text(ratio)


def test_a_level_randomsearch_might_have_reached_after_the_cut_is_only_a_bound():
    # Runs 2 and 3 were cut off by the budget: either might have got to 0.99 later.
    t = score({"1": True, "2": False, "3": False})["seconds_to"]["0.99"]
    assert t["random_median"] is None and not t["random_never"]
    assert bench.search_ratio(t, 10.0) == (pytest.approx(320 / 600), "bound")
    assert not bench.ratio_met(bench.search_ratio(t, 10.0))  # 0.53x is not <= 0.5x


def test_one_cut_run_does_not_stop_the_median_from_being_never():
    # Runs 2 and 3 ended without 0.99; run 1, cut off, reached it. The median run still ends without it.
    t = score({"1": False, "2": True, "3": True})["seconds_to"]["0.99"]
    assert t["random_never"]


def test_a_level_the_project_misses_is_not_met_whatever_randomsearch_did():
    times = {"project_median": bench.median_time(PROJECT, 0.995), "random_median": None, "random_never": True}
    assert times["project_median"] is None
    assert bench.search_ratio(times, 10.0) is None and not bench.ratio_met(None)


def test_targets_table_has_a_line_per_level_with_its_verdict():
    r = {"search": score(dict.fromkeys(RANDOM, True))}
    rows = {row["target"]: row["met"] for row in bench.targets(r)}
    assert rows["search: time to val_accuracy 0.99 <= 0.5x RandomSearch's"] is True
    assert rows["search: time to val_accuracy 0.98 <= 0.5x RandomSearch's"] is False
    assert "ended by themselves within the budget: project 3 of 3, RandomSearch 3 of 3" in bench.summary(
        {**r, "date": "d", "machine": {}, "precision": "float32"})


def _preset_run(seed: int, int8: float, int8_bytes: int, minutes: float) -> dict:
    variants = {"float32": {"test_accuracy": int8 + 0.0005, "bytes": 4 * int8_bytes, "gzip_bytes": 1, "params": 1},
                "int8": {"test_accuracy": int8, "bytes": int8_bytes, "gzip_bytes": 1, "params": 1}}
    return {"seed": seed, "minutes": minutes, "variants": variants,
            "quality_target": {"best_int8": bench.best_int8(variants, bench.QUALITY["standard"])}}


def test_a_preset_over_seeds_is_scored_by_the_mean_of_its_best_int8_files_and_its_slowest_run():
    runs = [_preset_run(0, 0.996, 50_000, 18.0), _preset_run(1, 0.9945, 50_000, 19.5)]
    best = [r["quality_target"]["best_int8"] for r in runs]
    record = {"standard": {"runs": runs, "seeds": [0, 1], "minutes": 19.5, "quality_target": {
        **bench.QUALITY["standard"], "best_int8": sum(best) / 2, "per_seed": best, "met": sum(best) / 2 >= 0.995}}}
    rows = {row["target"]: row for row in bench.targets(record)}
    quality = rows["standard: an int8 file >= 99.5% in <= 64 KB"]
    assert quality["met"] and "mean of seeds 0, 1: 99.60%, 99.45%" in quality["measured"]
    assert rows["run --preset standard <= 20 min"]["met"]
    assert rows["int8 loses <= 0.1 points against its float model"]["met"]


def test_only_int8_files_within_the_size_limit_count_for_the_standard_target():
    target = bench.QUALITY["standard"]
    variants = _preset_run(0, 0.997, target["max_bytes"] + 1, 10.0)["variants"]
    assert bench.best_int8(variants, target) == 0.0  # the float32 file is better still, but not int8
    variants["pruned_int8"] = dict(variants["int8"], bytes=target["max_bytes"], test_accuracy=0.9951)
    assert bench.best_int8(variants, target) == 0.9951


def test_hypervolume_marks_count_only_the_trials_done_by_each_mark():
    curve = [[100, 0.95, 8192], [400, 0.99, 32768], [700, 0.97, 4096]]
    assert list(hv.hypervolumes(curve, 12)) == ["5", "6", "10", "12"]  # half the budget and the budget too
    assert list(hv.hypervolumes(curve, 3)) == ["1.5", "3"]
    with pytest.raises(ValueError):
        hv.hypervolumes(curve, 0)
    marks = hv.hypervolumes(curve, 15)
    assert list(marks) == ["5", "7.5", "10", "15"]
    from mnist_opt.tuning import pareto

    assert marks["5"] == pareto.hypervolume([(0.95, 8192)], hv.REFERENCE)
    assert marks["10"] == pareto.hypervolume([(0.95, 8192), (0.99, 32768)], hv.REFERENCE)
    assert marks["5"] < marks["10"] < marks["15"]


class _Trial:
    """Optuna's suggest_* calls answered from a random generator, recorded."""

    def __init__(self, seed):
        import random

        self.rng, self.asked, self.ranges = random.Random(seed), {}, {}

    def suggest_categorical(self, name, choices):
        self.asked[name] = value = self.rng.choice(choices)
        return value

    def suggest_float(self, name, low, high, step=None, log=False):
        self.asked[name] = value = self.rng.uniform(low, high)
        self.ranges[name] = (low, high, log)
        return value

    def suggest_int(self, name, low, high, step=1, log=False):
        self.asked[name] = value = self.rng.randrange(low, high + 1, step)
        return value


@pytest.mark.parametrize("seed", range(5))
def test_optunas_draws_are_points_of_the_frontier_space(seed):
    from mnist_opt.tuning import space as space_module
    from mnist_opt.tuning.size import estimate_flash_bytes

    space = space_module.load(hv.SPACE)
    trial = _Trial(seed)
    values = hv.suggest(trial, space)
    for key, p in space.params.items():
        if key != "filters" and isinstance(p, space_module.Choice):
            assert values[key] in p.values and key in trial.asked
    assert {k for k in values if k.startswith("filters_")} == {f"filters_{b}" for b in range(values["conv_blocks"])}
    assert all(values[f"filters_{b}"] in space.params["filters"].values for b in range(values["conv_blocks"]))
    rate = space.params["learning_rate"]
    assert trial.ranges["learning_rate"] == (rate.min, rate.max, True)  # the space's bounds, drawn on a log scale
    assert rate.min <= values["learning_rate"] <= rate.max
    assert estimate_flash_bytes(values) > 0  # a model the project can build
