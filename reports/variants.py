"""The report of one tuned and exported run: every model measured now, on the data's test images (MNIST's 10,000).

    RUN/report.json   every figure, each file's sha256, settings and package versions
    RUN/report.md     the table, the recommended variant flagged
    RUN/report.html   the table and the figures, self-contained (opens offline)
"""

from __future__ import annotations

import gzip
import hashlib
import html
from collections.abc import Callable
from pathlib import Path

from mnist_opt import rundir, runio, workarounds
from mnist_opt.devices import Device
from mnist_opt.errors import InputError
from mnist_opt import data
from mnist_opt.inference.model import Model
from mnist_opt.reports import plots, render
from mnist_opt.reports.config import ReportConfig
from mnist_opt.reports.evaluate import scores
from mnist_opt.versions import package_versions

Log = Callable[[str], None]


def check_inputs(cfg: ReportConfig) -> dict:
    """Refuse bad settings and unfinished runs before anything is measured; return the run's documents."""
    if cfg.micro_images is not None and cfg.micro_images < 1:
        raise InputError(f"--micro-images: expected a number of test images of at least 1, got {cfg.micro_images}")
    run = Path(cfg.run_dir)
    rundir.require(run, rundir.EXPORTED, f"run `mnist-opt run --run-dir {run}` (or `tune` and `export`) first")
    runio.check_writable(run)
    manifest = rundir.manifest(run)
    if any(v["quantization"] == "int8" for v in manifest["variants"]):
        workarounds.require("tflm-flatbuffer-schema")  # TFLite Micro's check reads each int8 file's ops
    return {"best": rundir.best(run), "tune": rundir.tune_settings(run), "manifest": manifest}


def source(cfg: ReportConfig, tune_cfg: dict) -> data.Source:
    """The run's data, as its tuning settings name it, or at `--data` if the user moved it."""
    recorded = data.Source.of(tune_cfg)
    return recorded if cfg.data is None else data.Source(cfg.data, recorded.image_size, recorded.skip_bad_images)


def load_data(cfg: ReportConfig, log: Log) -> data.Loaded:
    """The run's data (`source`), refused if it is not what the run was tuned on (`data.check_recorded`)."""
    run = Path(cfg.run_dir)
    loaded = data.load(source(cfg, rundir.tune_settings(run)), log)
    data.check_recorded(loaded.info, rundir.data_sha256(run), str(run))
    return loaded


def flash_bytes(row: dict) -> int:
    """What a row's model takes on flash: a full-integer file's flash form, else the file itself."""
    form = ((row.get("micro") or {}).get("forms") or {}).get("flash")
    return form["bytes"] if form else row["bytes"]


def flash_arena_bytes(row: dict) -> int | None:
    """The TFLite Micro arena of a row's flash form (of the file itself if it has none); None: it cannot run."""
    m = row.get("micro") or {}
    form = (m.get("forms") or {}).get("flash")
    return form["arena_bytes"] if form else m.get("arena_bytes")


def exported_files(rows: list[dict], max_kb: float | None = None) -> list[dict]:
    """The rows of exported files; with a budget, only those whose flash bytes are at most `max_kb` KB."""
    return [r for r in rows if r["kind"] == "tflite" and (max_kb is None or flash_bytes(r) <= max_kb * 1024)]


def recommend(rows: list[dict], window: float, max_kb: float | None = None) -> str | None:
    """The smallest exported file within `window` points of the best exported accuracy.

    Smallest on flash: a full-integer file counts its flash form (export/micro/). With a budget, only files
    of at most `max_kb` KB on flash compete; if none fits, the smallest.
    """
    size = lambda r: (flash_bytes(r), r["bytes"], r["gzip_bytes"])  # noqa: E731
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
    """The flash size estimated before training (what --max-kb checks) against the int8 file's flash form."""
    int8 = next((r for r in rows if r["name"] == "int8"), None)
    form = ((int8 or {}).get("micro") or {}).get("forms", {}).get("uncompressed") or \
        ((int8 or {}).get("micro") or {}).get("forms", {}).get("flash")
    if form is None or "hyperparameters" not in best:
        return None
    from mnist_opt.tuning.size import estimate_flash_bytes

    estimated = estimate_flash_bytes(best["hyperparameters"])
    return {"estimated_bytes": estimated, "flash_bytes": form["bytes"], "error": (estimated - form["bytes"]) / form["bytes"]}


def micro_scores(model: bytes, forms: dict[str, bytes], x_test, y_test, litert_predicted,
                 images: int | None = None) -> dict:
    """A full-integer file and its flash forms in TFLite Micro: whether they run, arenas, test accuracy.

    The int8 file's agreement is given with the LiteRT run the table's accuracy comes from (XNNPACK, as LiteRT
    runs by default) and with LiteRT's own fixed-point kernels, which TFLite Micro's mirror. Each flash form
    (`forms`, what export wrote under micro/) is compared output for output with the int8 file in TFLite Micro:
    `differ` counts the images whose outputs are not identical. `images`: the first that many test images only
    (None: all of them).
    """
    from mnist_opt.export import litert, micro
    from mnist_opt.inference.model import to_inputs

    check = micro.check(model)
    out = {"runs": check["runs"], "int8_bytes": len(model), "arena_bytes": check["arena_bytes"],
           "unsupported_ops": check["unsupported_ops"], "error": check["error"], "test_accuracy": None,
           "agreement_with_litert": None, "agreement_with_litert_kernels": None, "images": None, "forms": {}}
    for form, blob in forms.items():
        c = micro.check(blob)
        out["forms"][form] = {"bytes": len(blob), "arena_bytes": c["arena_bytes"], "ops": c["ops"],
                              "error": c["error"], "test_accuracy": None, "differ": None}
    if not check["runs"]:
        return out
    x_test, y_test, litert_predicted = x_test[:images], y_test[:images], litert_predicted[:images]
    out["images"] = int(len(y_test))
    x = to_inputs(x_test)
    outputs = micro.predict(model, x, check["arena_bytes"])
    predicted = outputs.argmax(1)
    kernels = litert.predict(model, x, xnnpack=False).argmax(1)
    out.update(test_accuracy=float((predicted == y_test).mean()),
               agreement_with_litert=float((predicted == litert_predicted).mean()),
               agreement_with_litert_kernels=float((predicted == kernels).mean()))
    for form, f in out["forms"].items():
        if f["arena_bytes"] is not None:
            got = micro.predict(forms[form], x, f["arena_bytes"])
            f.update(test_accuracy=float((got.argmax(1) == y_test).mean()), differ=int((got != outputs).any(axis=1).sum()))
    return out


def flash_forms(run_dir: Path, entry: dict) -> dict[str, bytes]:
    """The flash forms export wrote for a variant (`micro/<variant>.tflite` and its uncompressed twin), checked
    against the manifest's sha256."""
    m = entry.get("micro") or {}
    found = {}
    for form, doc in (("flash", m), ("uncompressed", m.get("uncompressed"))):
        if doc and doc.get("file"):
            blob = (run_dir / "export" / doc["file"]).read_bytes()
            if hashlib.sha256(blob).hexdigest() != doc["sha256"]:
                raise InputError(f"{run_dir / 'export' / doc['file']} is not the file export wrote (its sha256 "
                                 f"differs from manifest.json): run `mnist-opt export --run-dir {run_dir}` again")
            found[form] = blob
    return found


def micro_line(row: dict) -> str:
    m = row.get("micro")
    if m is None:
        return ""
    if not m["runs"]:
        return f"  TFLite Micro: cannot run it ({m['error']})"
    forms = "".join(f"; {form} form {f['bytes']:,} bytes, arena {f['arena_bytes']:,}, "
                    f"{100 * f['test_accuracy']:.2f}%, {f['differ']:,} outputs differ" for form, f in m["forms"].items()
                    if f["test_accuracy"] is not None)
    return (f"  TFLite Micro {100 * m['test_accuracy']:.2f}% (agrees with LiteRT on "
            f"{100 * m['agreement_with_litert']:.2f}%, with its kernels without XNNPACK on "
            f"{100 * m['agreement_with_litert_kernels']:.2f}%), arena {m['arena_bytes']:,} bytes{forms}")


def report(cfg: ReportConfig, log: Log = lambda line: None, loaded: data.Loaded | None = None) -> dict:
    """Measure every model of the run on the test set; write report.json, report.md, report.html.

    `loaded`: the run's data, read and checked by the caller (a frontier's budgets share their search's data).
    """
    # 1. Inputs: a tuned and exported run; the baseline is trained if missing.
    docs = check_inputs(cfg)
    run_dir = Path(cfg.run_dir)
    tune_cfg = docs["tune"]
    loaded = loaded or load_data(cfg, log)  # checked before the baseline trains on it
    if not (run_dir / "baseline.keras").is_file():
        from mnist_opt.tuning.train import train_baseline

        log(f"baseline.keras missing: training the reference CNN ({cfg.baseline_epochs} epochs)")
        train_baseline(run_dir, cfg.baseline_epochs, tune_cfg["seed"], source(cfg, tune_cfg), log, cfg.baseline_images)

    # 2. The models, in table order, each loaded from its file.
    entries = [("baseline", run_dir / "baseline.keras", None), ("tuned", run_dir / rundir.BEST_MODEL, None)]
    entries += [(v["name"], run_dir / "export" / v["file"], v) for v in docs["manifest"]["variants"]]
    x_test, y_test, names = loaded.arrays["x_test"], loaded.arrays["y_test"], loaded.info.class_names

    # 3. Measure: test accuracy, agreement with the tuned model, size, latency.
    rows, predictions = [], {}
    for name, path, entry in entries:
        model = Model(path)
        predicted = model.probabilities(x_test).argmax(1)
        predictions[name] = predicted
        blob = model.bytes
        digest = hashlib.sha256(blob).hexdigest()
        row = {
            "name": name,
            "kind": model.kind,
            "file": str(path.relative_to(run_dir)),
            "sha256": digest,
            "matches_manifest": None if entry is None else digest == entry["sha256"],
            "test_accuracy": None,
            "params": model.keras.count_params() if model.kind == "keras" else docs["best"]["params"],
            "bytes": len(blob),
            "gzip_bytes": len(gzip.compress(blob, 9)),
            "sparsity": 0.0 if entry is None else entry["sparsity"],
            "val_accuracy": None if entry is None else entry.get("val_accuracy"),  # export's, on the validation split
            "quantization": "none" if entry is None else entry["quantization"],
            **model.latency_us(x_test[0], cfg.latency_runs, cfg.warmup_runs),
        }
        s = scores(y_test, predicted, len(names))
        row.update(test_accuracy=s["accuracy"], per_class_accuracy=s["per_class_accuracy"], confusion=s["confusion"])
        if row["quantization"] == "int8":
            row["micro"] = micro_scores(blob, flash_forms(run_dir, entry), x_test, y_test, predicted, cfg.micro_images)
        rows.append(row)
        log(f"measured {name:<16} test accuracy {100 * row['test_accuracy']:.2f}%  "
            f"{row['bytes']:>9,} bytes  median {row['median_us']:,.0f} us{micro_line(row)}")
    float_bytes = next((r["bytes"] for r in rows if r["name"] == "float32"), None)
    for row in rows:
        row["agreement_with_tuned"] = float((predictions[row["name"]] == predictions["tuned"]).mean())
        row["size_vs_float32"] = row["bytes"] / float_bytes if float_bytes else None

    # Multiply-accumulates: one figure for the run, as every variant has the tuned model's layers (the baseline's are
    # not counted); with it, each full-integer file against the device profile the run was tuned for, if any.
    from mnist_opt.tuning.size import count_macs

    macs = count_macs(docs["best"]["hyperparameters"])
    if tune_cfg.get("device"):
        device = Device.from_dict(tune_cfg["device"])
        for row in rows:
            if row["quantization"] == "int8":
                row["device_fit"] = device.fit(flash_bytes(row), flash_arena_bytes(row), macs)

    # 4. Write: json (everything), markdown (the table), html (table and figures).
    max_kb = cfg.max_kb if cfg.max_kb is not None else tune_cfg.get("max_kb")
    recommended = recommend(rows, cfg.accuracy_window, max_kb)
    doc = {
        "run_dir": str(run_dir),
        "test_images": int(len(y_test)),
        "data": loaded.info.to_dict(),
        "recommended": recommended,
        "recommendation_rule": recommendation_rule(cfg.accuracy_window, max_kb, rows),
        "max_kb": max_kb,
        "flash_size_estimate": size_estimate(docs["best"], rows),
        "macs": macs,  # multiply-accumulates per image of the tuned model and every variant
        "rows": rows,
        "settings": {"report": cfg.to_dict(), "tune": tune_cfg, "export": docs["manifest"]["settings"]},
        "best_hparams": docs["best"],
        "packages": package_versions(),
    }
    trials = runio.read_json(run_dir / rundir.TRIALS) if (run_dir / rundir.TRIALS).is_file() else []
    table = render.markdown_table(render.HEAD, [render.cells(r) for r in rows],
                                  highlight=[r["name"] == recommended for r in rows])
    runio.write_json(run_dir / "report.json", doc)
    runio.write_text(run_dir / "report.md", markdown(doc, table))
    runio.write_text(run_dir / "report.html", to_html(doc, trials))
    doc["table"] = table
    return doc


def markdown(doc: dict, table: str) -> str:
    best = doc["best_hparams"]
    return (f"# mnist-opt report: {doc['run_dir']}\n\n"
            f"Measured on {test_images(doc)}, from the files on disk.\n\n"
            f"{table}\n\n★ recommended: **{doc['recommended']}** ({doc['recommendation_rule']}).\n\n"
            f"{forms_section(doc)}{device_section(doc)}{per_class_section(doc)}"
            f"Tuned model: trial {best['trial_id']}, {best['params']:,} parameters, {macs_text(doc)}"
            f"validation accuracy {100 * best['val_accuracy']:.2f}%.\n\n{estimate_line(doc)}"
            f"Latency: batch of 1 on this CPU, {doc['settings']['report']['latency_runs']:,} timed runs after "
            f"{doc['settings']['report']['warmup_runs']} warm-up runs. TFLM: the full-integer files run in TFLite "
            f"Micro's host interpreter on {micro_images(doc)}; flash bytes, arena and TFLM accuracy are the flash "
            f"form's (the C array in export/micro/), the arena the smallest that allocates. Per-class accuracy, confusion matrices, "
            f"sha256 of every file, settings and package versions are in report.json.\n")


def test_images(doc: dict) -> str:
    """'the 10,000 MNIST test images', or the user's data and where its test images came from."""
    d = doc.get("data") or {"form": "mnist"}
    if d["form"] == "mnist":
        return f"the {doc['test_images']:,} MNIST test images"
    how = "its own test split" if d["test"] == "given" else "held out of its training images, never searched on"
    return (f"the {doc['test_images']:,} test images of {d['source']} ({'x'.join(map(str, d['shape']))}, "
            f"{d['classes']} classes; {how})")


def class_names(doc: dict) -> list[str]:
    return (doc.get("data") or {}).get("class_names") or [str(i) for i in range(10)]


def per_class_section(doc: dict) -> str:
    """The recommended file's accuracy on each class, by name."""
    rec = next((r for r in doc["rows"] if r["name"] == doc["recommended"]), doc["rows"][-1])
    table = render.markdown_table(render.CLASS_HEAD, render.class_cells(rec, class_names(doc)))
    return f"Per class ({rec['name']}; confusion matrices in report.json and report.html):\n\n{table}\n\n"


def macs_text(doc: dict) -> str:
    macs = doc.get("macs")
    return "" if macs is None else f"{macs:,} multiply-accumulates per image (every variant's), "


def device_cells(doc: dict) -> list[list[str]]:
    return [render.device_cells(r["name"], r["device_fit"]) for r in doc["rows"] if "device_fit" in r]


def device_section(doc: dict) -> str:
    """Each full-integer file against the run's device profile (`--device`), or nothing if it was tuned without one."""
    device, lines = doc["settings"]["tune"].get("device"), device_cells(doc)
    if not device or not lines:
        return ""
    return (f"Fits {device['name']}: {render.device_note(device)}\n\n"
            f"{render.markdown_table(render.DEVICE_HEAD, lines)}\n\n")


def forms_section(doc: dict) -> str:
    """The flash forms of the full-integer files (flash against RAM), or nothing if there are none."""
    lines = [line for r in doc["rows"] for line in render.forms_cells(r)]
    if not lines:
        return ""
    return (f"Flash forms (RUN/export/micro/): what a microcontroller stores, measured in TFLite Micro. "
            f"{FLASH_NOTE}\n\n{render.markdown_table(render.FORMS_HEAD, lines)}\n\n")


FLASH_NOTE = ("The flash form drops what TFLite Micro does not read (names, signatures, metadata, repeated zero "
              "points); where a kernel has few distinct values (clustered), its indices are stored in 1-7 bits "
              "and DECODE ops expand them into the arena: less flash, more RAM. The C arrays hold the flash form; "
              "the uncompressed one is its RAM-saving twin.")


def micro_images(doc: dict) -> str:
    n = doc["settings"]["report"].get("micro_images")
    return "the same images" if n is None or n >= doc["test_images"] else f"the first {n:,} of them"


def estimate_line(doc: dict) -> str:
    e = doc.get("flash_size_estimate")
    if not e:
        return ""
    return (f"Flash size estimate made before training (what `--max-kb` checks, unclustered): {e['estimated_bytes']:,} bytes; "
            f"the int8 file's flash form: {e['flash_bytes']:,} bytes ({100 * e['error']:+.1f}%).\n\n")


def to_html(doc: dict, trials: list[dict]) -> str:
    rows = doc["rows"]
    rec = next((r for r in rows if r["name"] == doc["recommended"]), rows[-1])
    figures = [
        render.img(plots.accuracy_vs_size(rows, doc["recommended"]), "accuracy vs size"),
        render.img(plots.search_history(trials), "validation accuracy over the search"),
        render.img(plots.confusion(rec["confusion"], f"confusion matrix: {rec['name']}", class_names(doc)),
                   "confusion matrix"),
    ]
    table = render.html_table(render.HEAD, [render.cells(r) for r in rows],
                              highlight=[r["name"] == doc["recommended"] for r in rows])
    intro = (f"<p>{html.escape(doc['run_dir'])}: measured on {html.escape(test_images(doc))}, "
             f"from the files on disk. ★ recommended: <b>{html.escape(str(doc['recommended']))}</b> "
             f"({html.escape(doc['recommendation_rule'])}).</p>\n"
             f"<p>{html.escape(estimate_line(doc).strip())}</p>\n")
    forms = [line for r in rows for line in render.forms_cells(r)]
    after = (f"<h2>Flash forms</h2><p>{html.escape(FLASH_NOTE)}</p>\n{render.html_table(render.FORMS_HEAD, forms)}\n"
             if forms else "")
    device = doc["settings"]["tune"].get("device")
    if device and device_cells(doc):
        after += (f"<h2>Fits {html.escape(device['name'])}</h2><p>{html.escape(render.device_note(device))}</p>\n"
                  f"{render.html_table(render.DEVICE_HEAD, device_cells(doc))}\n")
    after += (f"<h2>Per class: {html.escape(rec['name'])}</h2>\n"
              f"{render.html_table(render.CLASS_HEAD, render.class_cells(rec, class_names(doc)))}\n")
    return render.page("mnist-opt report", intro, table, figures, after=after)
