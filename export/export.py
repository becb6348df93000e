"""The export stage: a run's best model to nine deployable TFLite variants, and C++ for TFLite Micro.

    RUN/export/<variant>.tflite          one file per variant
    RUN/export/micro/<variant>.tflite    each full-integer variant's flash form (export/flash.py): what a
                                         microcontroller stores; <variant>.uncompressed.tflite where LUT
                                         compression applies (less flash) and the plain form needs less RAM
    RUN/export/micro/<variant>.h, .cc    the flash form as a C++ array, with its constants
    RUN/export/micro/README.md           the code that runs one on a microcontroller
    RUN/export/manifest.json             per variant: size, gzip size, sha256, sparsity, input/output
                                         quantization, its kernels' zeros and distinct values, TFLite Micro
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tf_keras

from mnist_opt.export import bridge, cluster as cluster_module, csource, flash, flatbuffer, litert, micro, \
    prune as prune_module, quantize as quantize_module, tflite
from mnist_opt.export.config import DEFAULT_CLUSTERS, VARIANTS, ExportConfig
from mnist_opt import rundir, runio, runtime, workarounds
from mnist_opt.errors import InputError
from mnist_opt import data
from mnist_opt.tuning import inputs
from mnist_opt.tuning.architecture import architecture
from mnist_opt.tuning.size import MAX_INDEX_BITS
from mnist_opt.versions import package_versions

Log = Callable[[str], None]

FORM_CHECK_IMAGES = 200  # validation images each flash form must give the int8 file's outputs on (the report: all test images)

# variant: (quantization, which Keras source it is converted from)
RECIPES = {
    "float32": ("none", "tuned"),
    "dynamic_range": ("dynamic_range", "tuned"),
    "float16": ("float16", "tuned"),
    "int8": ("int8", "tuned"),
    "pruned_float32": ("none", "pruned"),
    "pruned_int8": ("int8", "pruned"),
    "pruned_qat_int8": ("int8", "pruned_qat"),
    "clustered_int8": ("int8", "clustered"),
    "pruned_clustered_qat_int8": ("int8", "pruned_clustered_qat"),
}
# What each fine-tuned source is made from (the tuned model is the start of every chain).
NEEDS = {"pruned": (), "pruned_qat": ("pruned",), "clustered": (), "pruned_clustered_qat": ("pruned",)}


def check_inputs(cfg: ExportConfig) -> dict:
    """Refuse bad settings and unfinished runs before anything is written; return the run's documents."""
    if not 0.0 <= cfg.sparsity < 1.0:
        raise InputError(f"--sparsity: expected a fraction in [0, 1), got {cfg.sparsity}")
    if cfg.clusters is not None and not 2 <= cfg.clusters <= 2 ** MAX_INDEX_BITS:
        raise InputError(f"--clusters: expected 2 to {2 ** MAX_INDEX_BITS} shared values per kernel (TFLite Micro's "
                         f"look-up tables index at most {MAX_INDEX_BITS} bits), got {cfg.clusters}")
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown or not cfg.variants:
        raise InputError(f"--variants: unknown variant {unknown[0] if unknown else '(none)'}; "
                         f"choose from {', '.join(VARIANTS)}")
    run = Path(cfg.run_dir)
    rundir.require(run, rundir.TUNED, f"run `mnist-opt tune --run-dir {run}` first", what="no finished tuning")
    runio.check_writable(run)
    # The library internals the asked variants lean on, probed before any training (mnist_opt/workarounds.py).
    if any(RECIPES[v][0] == "int8" for v in cfg.variants):
        workarounds.require("tflm-flatbuffer-schema")  # each full-integer file's kernels, read from its flatbuffer
        workarounds.require("tflm-compression")  # and its flash form
    if any(RECIPES[v][1] in ("clustered", "pruned_clustered_qat") for v in cfg.variants):
        workarounds.require("tfmot-experimental-clustering")
    if any(RECIPES[v][1] == "pruned_clustered_qat" for v in cfg.variants):
        workarounds.require("pcqat-per-layer-quantizers")
    return {"best": rundir.best(run), "tune": rundir.tune_settings(run)}


def describe_io(model: bytes) -> dict:
    run = litert.Runner(model)
    out = {}
    for key, detail in (("input", run.input), ("output", run.output)):
        scale, zero = detail["quantization"]
        out[key] = {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero),
                    "shape": [int(s) for s in detail["shape"][1:]]}
    return out


def export(cfg: ExportConfig, log: Log = lambda line: None) -> dict:
    """Prune, quantize and convert the run's best model; write the files and the manifest."""
    # 1. Inputs: settings and the finished tuning run.
    docs = check_inputs(cfg)
    values, tune_cfg = docs["best"]["hyperparameters"], docs["tune"]
    # Unset, the clusters the run was tuned to count (`tune --clusters`), else 16: the sizes the search expected.
    cfg = replace(cfg, clusters=cfg.clusters or tune_cfg.get("clusters") or DEFAULT_CLUSTERS)
    run_dir = Path(cfg.run_dir)
    out_dir = run_dir / "export"
    # The arena limit the run was searched under (`tune --max-arena-kb`): no TFLite Micro file over it is written.
    max_arena = None if tune_cfg.get("max_arena_kb") is None else int(tune_cfg["max_arena_kb"] * 1024)
    split = data.load_split(tune_cfg["seed"], data.Source.of(tune_cfg), log)
    data.check_recorded(split.info, rundir.data_sha256(run_dir), str(run_dir))  # not files changed since tuning
    rng = np.random.default_rng(tune_cfg["seed"])
    check_x = inputs.to_inputs(split.x_val[: cfg.check_images]).numpy()
    val_x = inputs.to_inputs(split.x_val).numpy()  # each file's validation accuracy: what a frontier budget chooses by
    representative = inputs.to_inputs(
        split.x_train[rng.choice(len(split.y_train), min(cfg.representative_images, len(split.y_train)), replace=False)]).numpy()

    # 2. Bridge to tf_keras, checked.
    tuned = keras.saving.load_model(run_dir / rundir.BEST_MODEL, safe_mode=True)
    legacy, diff = bridge.to_tf_keras(tuned, values, check_x)
    log(f"bridge: tf_keras rebuild agrees with best.keras (max |p - p'| = {diff:.1e} on {len(check_x)} images)")
    sources = {"tuned": legacy}
    sparsities = {"tuned": 0.0}

    # 3. Fine-tune only the sources the asked-for variants are converted from.
    needed = {RECIPES[v][1] for v in cfg.variants} - {"tuned"}
    needed |= {n for source in needed for n in NEEDS[source]}
    if needed:
        keras.utils.set_random_seed(tune_cfg["seed"])
        idx = data.stratified_indices(split.y_train, min(cfg.train_subset or len(split.y_train),
                                                         len(split.y_train)), tune_cfg["seed"])
        classes = architecture(values)["classes"]
        train_ds = inputs.dataset(split.x_train[idx], split.y_train[idx], cfg.batch_size,
                                  inputs.Augment.from_values(values), seed=tune_cfg["seed"], classes=classes)
        val_ds = inputs.dataset(split.x_val, split.y_val, 1000, classes=classes)
        stop = [runtime.stop_on_interrupt(tf_keras)]
        fine_tune = FineTune(cfg, values, train_ds, val_ds, stop, log)
        for source in ("pruned", "pruned_qat", "clustered", "pruned_clustered_qat"):
            if source in needed:
                sources[source] = getattr(fine_tune, source)(legacy, sources)
                sparsities[source] = prune_module.sparsity(sources[source], cfg.min_prune_weights)
                log(f"{source}: sparsity of the large kernels {sparsities[source]:.3f}")

    # 4. Convert and write each variant; the manifest last, so it only lists whole files.
    names = list(split.info.class_names)
    manifest = {"run_dir": str(run_dir), "settings": cfg.to_dict(), "packages": package_versions(),
                "input_shape": list(split.info.shape), "class_names": names,
                "bridge_max_abs_diff": diff, "variants": []}
    for name in cfg.variants:
        quantization, source = RECIPES[name]
        model_bytes = tflite.convert(sources[source], quantization, representative)
        path = out_dir / f"{name}.tflite"
        runio.write_bytes(path, model_bytes)
        reference = sources[source].predict(check_x, verbose=0).argmax(1)
        agreement = float((litert.predict(model_bytes, check_x).argmax(1) == reference).mean())
        val_accuracy = float((litert.predict(model_bytes, val_x).argmax(1) == split.y_val).mean())
        entry = {
            "name": name,
            "file": path.name,
            "quantization": quantization,
            "pruned": source.startswith("pruned"),
            "source": source,
            "sparsity": sparsities[source],
            "bytes": len(model_bytes),
            "gzip_bytes": len(gzip.compress(model_bytes, 9)),
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            **describe_io(model_bytes),
            "agreement_with_source": agreement,
            "val_accuracy": val_accuracy,
            "settings": settings_of(source, cfg),
        }
        if quantization == "int8":
            entry.update(micro_files(name, model_bytes, entry, out_dir, cfg.min_prune_weights, check_x[:FORM_CHECK_IMAGES],
                                     names, max_arena))
        manifest["variants"].append(entry)
        log(f"wrote {path}  {entry['bytes']:,} bytes (gzip {entry['gzip_bytes']:,})  "
            f"input {entry['input']['dtype']}  agrees with its Keras source on {agreement:.1%}")
        if "micro" in entry:
            m = entry["micro"]
            log(f"  TFLite Micro: arena {m['arena_bytes']:,} bytes, C++ in {out_dir / m['header']} and .cc"
                if m["runs"] else f"  TFLite Micro cannot run it: {m['error']}")
    # Variants not re-made this time stay listed while their files are unchanged.
    made = {entry["name"] for entry in manifest["variants"]}
    for entry in previous_entries(out_dir):
        if entry["name"] not in made:
            if entry["quantization"] == "int8" and "lut" not in entry.get("micro", {}):  # before the flash form
                entry.update(micro_files(entry["name"], (out_dir / entry["file"]).read_bytes(), entry, out_dir,
                                         cfg.min_prune_weights, check_x[:FORM_CHECK_IMAGES], names, max_arena))
            manifest["variants"].append(entry)
    manifest["variants"].sort(key=lambda entry: VARIANTS.index(entry["name"]))
    tidy_micro(out_dir / "micro", manifest["variants"], names, split.info.digits)
    runio.write_json(out_dir / "manifest.json", manifest)
    return manifest


class FineTune:
    """The fine-tuned Keras sources of the compressed variants; each method reads what it builds on."""

    def __init__(self, cfg: ExportConfig, values: dict, train_ds, val_ds, callbacks: list, log: Log):
        self.cfg, self.values, self.train, self.val, self.callbacks, self.log = cfg, values, train_ds, val_ds, callbacks, log

    def pruned(self, tuned, sources):
        c = self.cfg
        self.log(f"prune: to {c.sparsity:.0%} sparsity over {c.prune_epochs} epochs of fine-tuning")
        return prune_module.strip(prune_module.prune(tuned, self.values, self.train, self.val, c.sparsity,
                                                     c.prune_epochs, c.min_prune_weights, callbacks=self.callbacks))

    def pruned_qat(self, tuned, sources):
        self.log(f"quantization-aware training: {self.cfg.qat_epochs} epochs, pruning preserved")
        return quantize_module.quantize(sources["pruned"], self.values, self.train, self.val, self.cfg.qat_epochs,
                                        callbacks=self.callbacks)

    def clustered(self, tuned, sources):
        c = self.cfg
        self.log(f"cluster: {c.clusters} shared values per large kernel, {c.cluster_epochs} epochs of fine-tuning")
        return cluster_module.cluster(tuned, self.values, self.train, self.val, c.clusters, c.cluster_epochs,
                                      c.min_prune_weights, callbacks=self.callbacks)

    def pruned_clustered_qat(self, tuned, sources):
        c = self.cfg
        self.log(f"cluster the pruned model, zeros kept: {c.clusters} values, {c.cluster_epochs} epochs; "
                 f"then {c.qat_epochs} epochs of QAT keeping clusters and zeros (PCQAT)")
        clustered = cluster_module.cluster(sources["pruned"], self.values, self.train, self.val, c.clusters,
                                           c.cluster_epochs, c.min_prune_weights, preserve_sparsity=True,
                                           callbacks=self.callbacks)
        return quantize_module.quantize(clustered, self.values, self.train, self.val, c.qat_epochs,
                                        callbacks=self.callbacks, preserve="clusters")


def settings_of(source: str, cfg: ExportConfig) -> dict:
    """The export settings that shaped a variant's source."""
    keys = {"tuned": (), "pruned": ("sparsity", "prune_epochs"), "pruned_qat": ("sparsity", "prune_epochs", "qat_epochs"),
            "clustered": ("clusters", "cluster_epochs"),
            "pruned_clustered_qat": ("sparsity", "prune_epochs", "clusters", "cluster_epochs", "qat_epochs")}[source]
    return {k: getattr(cfg, k) for k in keys}


def tidy_micro(micro_dir: Path, variants: list[dict], names: list[str], digits: bool = False) -> None:
    """micro/ holds the flash forms of the listed full-integer variants, the sources of those that TFLite
    Micro runs, and a README of them."""
    keep = {Path(f).name for e in variants if "micro" in e
            for f in (e["micro"].get("file"), (e["micro"].get("uncompressed") or {}).get("file"),
                      e["micro"].get("header"), e["micro"].get("source")) if f}
    for path in micro_dir.glob("*") if micro_dir.is_dir() else ():
        if path.suffix in (".h", ".cc", ".tflite") and path.name not in keep:
            path.unlink()  # the file of a variant that is gone, or no longer runs
    runs = [{"name": e["name"], **e["micro"]} for e in variants if e.get("micro", {}).get("runs")]
    if runs:
        runio.write_text(micro_dir / "README.md", csource.readme(runs, names, digits))
    elif (micro_dir / "README.md").exists():
        (micro_dir / "README.md").unlink()


def micro_files(name: str, model: bytes, entry: dict, out_dir: Path, min_weights: int, images: np.ndarray,
                names: list[str], max_arena: int | None = None) -> dict:
    """A full-integer file's kernels, its flash forms (`export.flash`) with their TFLite Micro checks and,
    if TFLite Micro runs them, the C++ source of the smallest.

    RUN/export/micro/<name>.tflite holds the flash form the C arrays hold (LUT-compressed where that applies);
    <name>.uncompressed.tflite, where the two differ, the one that needs less RAM. Each form is checked against
    the int8 file in TFLite Micro on `images` (validation images) and dropped if its outputs differ. With
    `max_arena` (bytes), a form whose arena is larger is not written: a compressed form over it gives way to the
    uncompressed one, and a file whose every form is over it gets no TFLite Micro files (the entry says why).
    """
    kernels = flatbuffer.kernels(model, min_weights)
    made, dropped = flash.verified_forms(model, images)  # each form gives the int8 file's outputs, or goes
    check = micro.check(made["flash"])
    if max_arena is not None and check["runs"]:
        made, dropped, check = _within_arena(made, dropped, check, max_arena)
    if not check["runs"]:  # nothing to write for TFLite Micro
        return {"kernels": kernels, "file_sparsity": flatbuffer.sparsity(kernels),
                "micro": {**check, "file": None, "bytes": len(made["flash"]), "lut": [], "uncompressed": None,
                          "dropped": dropped}}
    micro_dir = out_dir / "micro"
    forms = {}
    for form, blob in made.items():
        file = f"micro/{name}.tflite" if form == "flash" else f"micro/{name}.{form}.tflite"
        runio.write_bytes(out_dir / file, blob)
        forms[form] = {"file": file, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                       "arena_bytes": check["arena_bytes"] if form == "flash" else micro.check(blob)["arena_bytes"]}
    check.update(forms["flash"])
    check["lut"] = [{"layer": flatbuffer.layer_name(p["name"]), **{k: p[k] for k in ("bits", "distinct", "weights")}}
                    for p in (flash.lut_plan(model) if "uncompressed" in made else [])]
    check["uncompressed"] = forms.get("uncompressed")
    check["dropped"] = dropped
    io = {"input": entry["input"], "output": entry["output"]}
    runio.write_text(micro_dir / f"{name}.h",
                     csource.header(name, check["file"], check["sha256"], io, check["arena_bytes"], check["ops"], names))
    runio.write_text(micro_dir / f"{name}.cc", csource.source(name, made["flash"]))
    check.update(header=f"micro/{name}.h", source=f"micro/{name}.cc",
                 tensor_arena_size=csource.arena_constant(check["arena_bytes"]))
    return {"kernels": kernels, "file_sparsity": flatbuffer.sparsity(kernels), "micro": check}


def _within_arena(made: dict, dropped: list[str], check: dict, max_arena: int) -> tuple[dict, list[str], dict]:
    """The forms of `made` whose arena fits in `max_arena` bytes (the smallest first), what went, and the check of
    the one the C arrays hold; if none fits, the check says so and runs is False (nothing is written)."""
    if check["arena_bytes"] <= max_arena:
        return made, dropped, check
    if "uncompressed" in made:
        lean = micro.check(made["uncompressed"])
        dropped = dropped + [f"the LUT-compressed form (its arena, {check['arena_bytes']:,} bytes, is over the "
                             f"--max-arena-kb limit of {max_arena:,})"]
        if lean["arena_bytes"] is not None and lean["arena_bytes"] <= max_arena:
            return {"flash": made["uncompressed"]}, dropped, lean
        check = lean
    return made, dropped, {**check, "runs": False, "error": f"its TensorFlow Lite Micro arena, {check['arena_bytes']:,} "
                           f"bytes, is over the --max-arena-kb limit of {max_arena:,} bytes: no microcontroller file "
                           "is written; search again with the limit (tune --max-arena-kb) to get a model that fits"}


def previous_entries(out_dir: Path) -> list[dict]:
    """Entries of an earlier manifest whose files are still there, byte for byte."""
    path = out_dir / "manifest.json"
    if not path.is_file():
        return []
    entries = []
    for entry in runio.read_json(path).get("variants", []):
        file = out_dir / entry["file"]
        if file.is_file() and hashlib.sha256(file.read_bytes()).hexdigest() == entry["sha256"]:
            entries.append(entry)
    return entries
