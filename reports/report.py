"""The report stage: every model of a run, measured now, on the 10,000 MNIST test images.

    RUN/report.json   every figure, each file's sha256, settings and package versions
    RUN/report.md     the table, the recommended variant flagged
    RUN/report.html   the table and the figures, self-contained (opens offline)
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
from collections.abc import Callable
from pathlib import Path

from mnist_opt import rundir, runio
from reports import plots
from reports.config import ReportConfig
from reports.evaluate import Model, scores
from tuning.data import load_test
from tuning.search import package_versions

Log = Callable[[str], None]


def check_inputs(cfg: ReportConfig) -> dict:
    run = Path(cfg.run_dir)
    rundir.require(run, rundir.EXPORTED, f"run `mnist-opt run --run-dir {run}` (or `tune` and `export`) first")
    runio.check_writable(run)
    return {"best": rundir.best(run), "tune": rundir.tune_settings(run), "manifest": rundir.manifest(run)}


def exported_files(rows: list[dict], max_kb: float | None = None) -> list[dict]:
    """The rows of exported files; with a budget, only those of at most `max_kb` KB."""
    return [r for r in rows if r["kind"] == "tflite" and (max_kb is None or r["bytes"] <= max_kb * 1024)]


def recommend(rows: list[dict], window: float, max_kb: float | None = None) -> str | None:
    """The smallest exported file within `window` points of the best exported accuracy.

    With a budget, only files of at most `max_kb` KB compete; if none fits, the smallest file.
    """
    size = lambda r: (r["bytes"], r["gzip_bytes"])  # noqa: E731
    exported = exported_files(rows, max_kb) or sorted(exported_files(rows), key=size)[:1]
    if not exported:
        return None
    best = max(r["test_accuracy"] for r in exported)
    close = [r for r in exported if 100 * (best - r["test_accuracy"]) <= window + 1e-9]
    return min(close, key=size)["name"]


def recommendation_rule(window: float, max_kb: float | None, rows: list[dict]) -> str:
    rule = f"smallest exported file within {window} points of the best exported test accuracy"
    if max_kb is None:
        return rule
    if exported_files(rows, max_kb):
        return f"{rule}, among files of at most {max_kb:g} KB (the size budget)"
    return f"no exported file fits the size budget of {max_kb:g} KB: the smallest one"


def size_estimate(best: dict, rows: list[dict]) -> dict | None:
    """The int8 size estimated before training (what --max-kb checks) against the real int8 file."""
    int8 = next((r for r in rows if r["name"] == "int8"), None)
    if int8 is None or "hyperparameters" not in best:
        return None
    from tuning.size import estimate_int8_bytes

    estimated = estimate_int8_bytes(best["hyperparameters"])
    return {"estimated_bytes": estimated, "int8_bytes": int8["bytes"],
            "error": (estimated - int8["bytes"]) / int8["bytes"]}


def micro_scores(model: bytes, x_test, y_test, litert_predicted) -> dict:
    """A full-integer file in TFLite Micro: whether it runs, its arena, test accuracy, agreement with LiteRT.

    Agreement is given twice: with the LiteRT run the table's accuracy comes from (XNNPACK, as LiteRT
    runs by default) and with LiteRT's own fixed-point kernels, which TFLite Micro's mirror.
    """
    from export import litert, micro
    from reports.evaluate import to_inputs

    check = micro.check(model)
    out = {"runs": check["runs"], "flash_bytes": len(model), "arena_bytes": check["arena_bytes"],
           "unsupported_ops": check["unsupported_ops"], "error": check["error"], "test_accuracy": None,
           "agreement_with_litert": None, "agreement_with_litert_kernels": None}
    if check["runs"]:
        x = to_inputs(x_test)
        predicted = micro.predict(model, x, check["arena_bytes"]).argmax(1)
        kernels = litert.predict(model, x, xnnpack=False).argmax(1)
        out.update(test_accuracy=float((predicted == y_test).mean()),
                   agreement_with_litert=float((predicted == litert_predicted).mean()),
                   agreement_with_litert_kernels=float((predicted == kernels).mean()))
    return out


def micro_line(row: dict) -> str:
    m = row.get("micro")
    if m is None:
        return ""
    if not m["runs"]:
        return f"  TFLite Micro: cannot run it ({m['error']})"
    return (f"  TFLite Micro {100 * m['test_accuracy']:.2f}% (agrees with LiteRT on "
            f"{100 * m['agreement_with_litert']:.2f}%, with its kernels without XNNPACK on "
            f"{100 * m['agreement_with_litert_kernels']:.2f}%), arena {m['arena_bytes']:,} bytes")


def micro_cells(row: dict) -> list[str]:
    """flash bytes, arena bytes, TFLite Micro accuracy: '-' for rows that are not full-integer files."""
    m = row.get("micro")
    if m is None:
        return ["-", "-", "-"]
    if not m["runs"]:
        return [f"{m['flash_bytes']:,}", "-", "cannot run: " + (", ".join(m["unsupported_ops"]) or m["error"])]
    return [f"{m['flash_bytes']:,}", f"{m['arena_bytes']:,}", f"{100 * m['test_accuracy']:.2f}"]


def report(cfg: ReportConfig, log: Log = lambda line: None) -> dict:
    """Measure every model of the run on the test set; write report.json, report.md, report.html.

    A run tuned with --budgets is reported budget by budget, with the frontier across them (`reports.frontier`).
    """
    if rundir.is_frontier(Path(cfg.run_dir)):
        from reports import frontier

        return frontier.report(cfg, log)
    # 1. Inputs: a tuned and exported run; the baseline is trained if missing.
    docs = check_inputs(cfg)
    run_dir = Path(cfg.run_dir)
    tune_cfg = docs["tune"]
    if not (run_dir / "baseline.keras").is_file():
        from tuning.train import train_baseline

        log(f"baseline.keras missing: training the reference CNN ({cfg.baseline_epochs} epochs)")
        train_baseline(run_dir, cfg.baseline_epochs, tune_cfg["seed"], tune_cfg["data"], log, cfg.baseline_images)

    # 2. The models, in table order, each loaded from its file.
    entries = [("baseline", run_dir / "baseline.keras", None), ("tuned", run_dir / rundir.BEST_MODEL, None)]
    entries += [(v["name"], run_dir / "export" / v["file"], v) for v in docs["manifest"]["variants"]]
    x_test, y_test = load_test(tune_cfg["data"])

    # 3. Measure: test accuracy, agreement with the tuned model, size, latency.
    rows, predictions = [], {}
    for name, path, entry in entries:
        model = Model(path)
        predicted = model.probabilities(x_test).argmax(1)
        predictions[name] = predicted
        data = model.bytes
        digest = hashlib.sha256(data).hexdigest()
        row = {
            "name": name,
            "kind": model.kind,
            "file": str(path.relative_to(run_dir)),
            "sha256": digest,
            "matches_manifest": None if entry is None else digest == entry["sha256"],
            "test_accuracy": None,
            "params": model.keras.count_params() if model.kind == "keras" else docs["best"]["params"],
            "bytes": len(data),
            "gzip_bytes": len(gzip.compress(data, 9)),
            "sparsity": 0.0 if entry is None else entry["sparsity"],
            "quantization": "none" if entry is None else entry["quantization"],
            **model.latency_us(x_test[0], cfg.latency_runs, cfg.warmup_runs),
        }
        s = scores(y_test, predicted)
        row.update(test_accuracy=s["accuracy"], per_class_accuracy=s["per_class_accuracy"], confusion=s["confusion"])
        if row["quantization"] == "int8":
            row["micro"] = micro_scores(data, x_test, y_test, predicted)
        rows.append(row)
        log(f"measured {name:<16} test accuracy {100 * row['test_accuracy']:.2f}%  "
            f"{row['bytes']:>9,} bytes  median {row['median_us']:,.0f} us{micro_line(row)}")
    float_bytes = next((r["bytes"] for r in rows if r["name"] == "float32"), None)
    for row in rows:
        row["agreement_with_tuned"] = float((predictions[row["name"]] == predictions["tuned"]).mean())
        row["size_vs_float32"] = row["bytes"] / float_bytes if float_bytes else None

    # 4. Write: json (everything), markdown (the table), html (table and figures).
    max_kb = cfg.max_kb if cfg.max_kb is not None else tune_cfg.get("max_kb")
    recommended = recommend(rows, cfg.accuracy_window, max_kb)
    doc = {
        "run_dir": str(run_dir),
        "test_images": int(len(y_test)),
        "recommended": recommended,
        "recommendation_rule": recommendation_rule(cfg.accuracy_window, max_kb, rows),
        "max_kb": max_kb,
        "int8_size_estimate": size_estimate(docs["best"], rows),
        "rows": rows,
        "settings": {"report": cfg.to_dict(), "tune": tune_cfg, "export": docs["manifest"]["settings"]},
        "best_hparams": docs["best"],
        "packages": package_versions(),
    }
    trials = runio.read_json(run_dir / rundir.TRIALS) if (run_dir / rundir.TRIALS).is_file() else []
    table = markdown_table(rows, recommended)
    runio.write_json(run_dir / "report.json", doc)
    runio.write_text(run_dir / "report.md", markdown(doc, table))
    runio.write_text(run_dir / "report.html", to_html(doc, trials))
    doc["table"] = table
    return doc


def markdown_table(rows: list[dict], recommended: str | None) -> str:
    head = ("| model | kind | test acc % | params | bytes | gzip bytes | vs float32 | sparsity | "
            "agrees w/ tuned % | median µs | p95 µs | flash bytes | arena bytes | TFLM acc % |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        name = f"**{r['name']}** ★" if r["name"] == recommended else r["name"]
        ratio = f"{r['size_vs_float32']:.2f}x" if r["size_vs_float32"] else "-"
        lines.append(f"| {name} | {r['kind']} | {100 * r['test_accuracy']:.2f} | {r['params']:,} | {r['bytes']:,} | "
                     f"{r['gzip_bytes']:,} | {ratio} | {r['sparsity']:.2f} | {100 * r['agreement_with_tuned']:.2f} | "
                     f"{r['median_us']:,.0f} | {r['p95_us']:,.0f} | {' | '.join(micro_cells(r))} |")
    return "\n".join(lines)


def markdown(doc: dict, table: str) -> str:
    best = doc["best_hparams"]
    return (f"# mnist-opt report: {doc['run_dir']}\n\n"
            f"Measured on the {doc['test_images']:,} MNIST test images, from the files on disk.\n\n"
            f"{table}\n\n★ recommended: **{doc['recommended']}** ({doc['recommendation_rule']}).\n\n"
            f"Tuned model: trial {best['trial_id']}, {best['params']:,} parameters, "
            f"validation accuracy {100 * best['val_accuracy']:.2f}%.\n\n{estimate_line(doc)}"
            f"Latency: batch of 1 on this CPU, {doc['settings']['report']['latency_runs']:,} timed runs after "
            f"{doc['settings']['report']['warmup_runs']} warm-up runs. TFLM: the full-integer files run in TFLite "
            f"Micro's host interpreter on the same images; flash bytes are the C array's (export/micro/), the "
            f"arena the smallest that allocates. Per-class accuracy, confusion matrices, "
            f"sha256 of every file, settings and package versions are in report.json.\n")


def estimate_line(doc: dict) -> str:
    e = doc.get("int8_size_estimate")
    if not e:
        return ""
    return (f"Size estimate made before training (what `--max-kb` checks): {e['estimated_bytes']:,} bytes; "
            f"the real int8.tflite: {e['int8_bytes']:,} bytes ({100 * e['error']:+.1f}%).\n\n")


# The html reports' look (this one and reports/frontier.py's).
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
         "td:first-child,th:first-child{text-align:left}tr.rec{background:#fff6d5;font-weight:bold}"
         "img{max-width:100%;margin:1em 0}")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def to_html(doc: dict, trials: list[dict]) -> str:
    rows = doc["rows"]
    rec = next((r for r in rows if r["name"] == doc["recommended"]), rows[-1])
    head = ["model", "kind", "test acc %", "params", "bytes", "gzip bytes", "vs float32", "sparsity",
            "agrees w/ tuned %", "median µs", "p95 µs", "flash bytes", "arena bytes", "TFLM acc %"]
    body = []
    for r in rows:
        ratio = f"{r['size_vs_float32']:.2f}x" if r["size_vs_float32"] else "-"
        cells = [r["name"] + (" ★" if r["name"] == doc["recommended"] else ""), r["kind"],
                 f"{100 * r['test_accuracy']:.2f}", f"{r['params']:,}", f"{r['bytes']:,}", f"{r['gzip_bytes']:,}",
                 ratio, f"{r['sparsity']:.2f}", f"{100 * r['agreement_with_tuned']:.2f}",
                 f"{r['median_us']:,.0f}", f"{r['p95_us']:,.0f}", *micro_cells(r)]
        cls = ' class="rec"' if r["name"] == doc["recommended"] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    figures = [
        _img(plots.accuracy_vs_size(rows, doc["recommended"]), "accuracy vs size"),
        _img(plots.search_history(trials), "validation accuracy over the search"),
        _img(plots.confusion(rec["confusion"], f"confusion matrix: {rec['name']}"), "confusion matrix"),
    ]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mnist-opt report</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>mnist-opt report</h1>\n"
            f"<p>{html.escape(doc['run_dir'])}: measured on the {doc['test_images']:,} MNIST test images, "
            f"from the files on disk. ★ recommended: <b>{html.escape(str(doc['recommended']))}</b> "
            f"({html.escape(doc['recommendation_rule'])}).</p>\n"
            f"<p>{html.escape(estimate_line(doc).strip())}</p>\n"
            "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>\n"
            + "\n".join(body) + "</table>\n" + "\n".join(figures) + "\n</body></html>\n")
