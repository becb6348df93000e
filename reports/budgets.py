"""The report of a run tuned with --budgets: each budget's run measured, and the frontier across them.

    RUN/frontier/<K>kb/report.*   each budget's own report (every variant, as for any run)
    RUN/report.json               "frontier": per budget, its model's flash form and int8 file (or why none fits);
                                  "files": every exported full-integer file; each budget's report
    RUN/report.md, report.html    the frontier table; the html adds the frontier plot
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from mnist_opt import rundir, runio
from mnist_opt.reports import plots, render, variants
from mnist_opt.reports.config import ReportConfig
from mnist_opt.versions import package_versions

Log = Callable[[str], None]
KB = 1024
BASELINE_FILES = ("baseline.keras", "baseline.json")


def int8_files(budget_kb: float, sub_report: dict) -> list[dict]:
    """A budget's full-integer files as the frontier lists them, measured by its report."""
    out = []
    for r in sub_report["rows"]:
        if r["quantization"] != "int8":
            continue
        form = ((r.get("micro") or {}).get("forms") or {}).get("flash") or {}
        out.append({"budget_kb": budget_kb, "variant": r["name"], "file": r["file"], "int8_bytes": r["bytes"],
                    "flash_bytes": form.get("bytes", r["bytes"]), "gzip_bytes": r["gzip_bytes"], "params": r["params"],
                    "test_accuracy": r["test_accuracy"], "median_us": r["median_us"],
                    "arena_bytes": form.get("arena_bytes"), "micro_test_accuracy": form.get("test_accuracy"),
                    "sparsity": r["sparsity"], "val_accuracy": r.get("val_accuracy"), "macs": sub_report.get("macs"),
                    "device_fit": r.get("device_fit")})
    return out


def budget_file(files: list[dict], budget_kb: float) -> dict | None:
    """The budget's file: of its model's full-integer files whose flash form fits the budget, the one with the
    best validation accuracy (export measures it), then the smaller flash form.

    Chosen on validation: the test accuracy would choose on the test set. The other files are in
    report.json's "files".
    """
    fits = [f for f in files if f["flash_bytes"] <= budget_kb * KB]
    return max(fits, key=lambda f: (f["val_accuracy"] or 0.0, -f["flash_bytes"]), default=None)


def frontier_rows(entries: list[dict], files_by_dir: dict[str, list[dict]]) -> list[dict]:
    """report.json's "frontier": one row per budget, from frontier.json's entries and the files measured."""
    rows = []
    for e in entries:
        kb = e["budget_kb"]
        row = {"budget_kb": kb, "budget_bytes": int(kb * KB), "dir": e["dir"], "trial_id": e["trial_id"],
               "val_accuracy": e.get("val_accuracy"), "reason": e["reason"],
               **{k: e.get(k) for k in ("start", "start_val_accuracy", "searched_val_accuracy", "searched_beat_starts")}}
        best = budget_file(files_by_dir.get(e["dir"], []), kb) if e["dir"] else None
        if e["dir"] and best is None:
            sizes = [f["flash_bytes"] for f in files_by_dir.get(e["dir"], [])]
            row["reason"] = (f"the flash forms of trial {e['trial_id']} are all over {kb:g} KB ({min(sizes):,} bytes "
                             "at least)" if sizes else f"{e['dir']} has no int8 file; export it with an int8 variant")
        if best is not None:
            row.update(variant=best["variant"], file=f"{e['dir']}/{best['file']}", flash_bytes=best["flash_bytes"],
                       int8_bytes=best["int8_bytes"], gzip_bytes=best["gzip_bytes"], params=best["params"],
                       test_accuracy=best["test_accuracy"], micro_test_accuracy=best["micro_test_accuracy"],
                       median_us=best["median_us"], arena_bytes=best["arena_bytes"], macs=best["macs"],
                       device_fit=best["device_fit"])
        rows.append(row)
    return rows


def report(cfg: ReportConfig, log: Log = lambda line: None) -> dict:
    """Report every budget's run, then the frontier across them; write RUN/report.json, .md, .html."""
    # 1. Inputs: frontier.json, and each budget's model exported.
    run = Path(cfg.run_dir)
    frontier = rundir.frontier(run)
    dirs = rundir.frontier_dirs(run)
    for _, sub in dirs:
        rundir.require(sub, rundir.EXPORTED, f"run `mnist-opt export {sub}` (or `mnist-opt run` again) first")
    runio.check_writable(run)

    # 2. The baseline, trained once for the run, is every budget's first row.
    tune_cfg = rundir.tune_settings(run)
    loaded = variants.load_data(cfg, log)  # the run's data, checked before the baseline trains on it; read once
    if not (run / "baseline.keras").is_file():
        from mnist_opt.tuning.train import train_baseline

        log(f"baseline.keras missing: training the reference CNN ({cfg.baseline_epochs} epochs)")
        train_baseline(run, cfg.baseline_epochs, tune_cfg["seed"], variants.source(cfg, tune_cfg), log,
                       cfg.baseline_images)
    for _, sub in dirs:
        for file in BASELINE_FILES:
            if not (sub / file).is_file():
                shutil.copyfile(run / file, sub / file)

    # 3. Each budget's report: every variant measured on the test set.
    files, reports = {}, {}
    for kb, sub in dirs:
        log(f"frontier {kb:g} KB: measuring {sub}")
        doc = variants.report(replace(cfg, run_dir=str(sub), max_kb=kb), log, loaded)
        key = str(sub.relative_to(run))
        files[key] = int8_files(kb, doc)
        reports[key] = {"recommended": doc["recommended"], "report": f"{key}/report.html"}

    # 4. The frontier and the files, written.
    rows = frontier_rows(frontier["entries"], files)
    trials = runio.read_json(run / rundir.TRIALS) if (run / rundir.TRIALS).is_file() else []
    doc = {"run_dir": str(run), "budgets_kb": frontier["budgets_kb"], "frontier": rows,
           "files": [f for fs in files.values() for f in fs], "reports": reports,
           "settings": {"report": cfg.to_dict(), "tune": tune_cfg}, "packages": package_versions()}
    table = render.markdown_table(render.BUDGET_HEAD, [render.budget_cells(r) for r in rows])
    runio.write_json(run / rundir.REPORT, doc)
    runio.write_text(run / "report.md", f"# mnist-opt frontier: {run}\n\n{table}\n\n{NOTE}\n{device_section(doc)}")
    runio.write_text(run / "report.html", to_html(doc, plots.frontier(trials, doc["files"], rows)))
    doc["table"] = table
    return doc


NOTE = ("Each budget's model is the search's best on validation whose flash form (what a microcontroller stores: "
        "export/micro/<variant>.tflite) fits the budget (raw bytes, 1 KB = 1,024 bytes); its flash form is measured "
        "in TFLite Micro, its int8 file in LiteRT, on the MNIST test images. Each budget's own report, with every "
        "variant (pruned and clustered files, their flash forms), is in its directory. Start / searched: the search's "
        "validation accuracy of the best starting point of the space and of the best searched design that fit the "
        "budget; ★ the budget's model is a searched design that beat every start.")


def device_cells(rows: list[dict]) -> list[list[str]]:
    """Each budget's file against the device profile the run was tuned for (`--device`)."""
    return [render.device_cells(f"{r['budget_kb']:g} KB: {r['file']}", r["device_fit"]) for r in rows
            if r.get("device_fit")]


def device_section(doc: dict) -> str:
    """The budgets' files against the run's device profile, or nothing if it was tuned without one."""
    device, lines = doc["settings"]["tune"].get("device"), device_cells(doc["frontier"])
    if not device or not lines:
        return ""
    return (f"\nFits {device['name']}: {render.device_note(device)} Each budget's report has every file's fit.\n\n"
            f"{render.markdown_table(render.DEVICE_HEAD, lines)}\n")


def to_html(doc: dict, plot: bytes) -> str:
    links = "".join(f'<li><a href="{html.escape(r["report"])}">{html.escape(k)}</a>: recommended '
                    f'{html.escape(str(r["recommended"]))}</li>' for k, r in doc["reports"].items())
    table = render.html_table(render.BUDGET_HEAD, [render.budget_cells(r) for r in doc["frontier"]])
    return render.page("mnist-opt frontier", f"<p>{html.escape(doc['run_dir'])}: {html.escape(NOTE)}</p>\n", table,
                       [render.img(plot, "the accuracy-size frontier")],
                       after=f"<p>Each budget's report:</p><ul>{links}</ul>\n")
