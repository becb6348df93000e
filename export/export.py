"""The export stage: a run's best model to seven deployable TFLite variants.

    RUN/export/<variant>.tflite   one file per variant
    RUN/export/manifest.json      per variant: size, gzip size, sha256, sparsity, input/output quantization
    RUN/export/config.json        the resolved export settings
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tf_keras

from export import bridge, litert, prune as prune_module, quantize as quantize_module, tflite
from export.config import VARIANTS, ExportConfig
from mnist_opt import rundir, runio, runtime
from mnist_opt.errors import InputError
from tuning import data, inputs
from tuning.search import package_versions

Log = Callable[[str], None]

# variant: (quantization, which Keras source it is converted from)
RECIPES = {
    "float32": ("none", "tuned"),
    "dynamic_range": ("dynamic_range", "tuned"),
    "float16": ("float16", "tuned"),
    "int8": ("int8", "tuned"),
    "pruned_float32": ("none", "pruned"),
    "pruned_int8": ("int8", "pruned"),
    "pruned_qat_int8": ("int8", "pruned_qat"),
}


def check_inputs(cfg: ExportConfig) -> dict:
    """Refuse bad settings and unfinished runs before anything is written; return the run's documents."""
    if not 0.0 <= cfg.sparsity < 1.0:
        raise InputError(f"--sparsity: expected a fraction in [0, 1), got {cfg.sparsity}")
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown or not cfg.variants:
        raise InputError(f"--variants: unknown variant {unknown[0] if unknown else '(none)'}; "
                         f"choose from {', '.join(VARIANTS)}")
    run = Path(cfg.run_dir)
    rundir.require(run, rundir.TUNED, f"run `mnist-opt tune --run-dir {run}` first", what="no finished tuning")
    runio.check_writable(run)
    return {"best": rundir.best(run), "tune": rundir.tune_settings(run)}


def describe_io(model: bytes) -> dict:
    run = litert.Runner(model)
    out = {}
    for key, detail in (("input", run.input), ("output", run.output)):
        scale, zero = detail["quantization"]
        out[key] = {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero)}
    return out


def export(cfg: ExportConfig, log: Log = lambda line: None) -> dict:
    """Prune, quantize and convert the run's best model; write the files and the manifest."""
    # 1. Inputs: settings and the finished tuning run.
    docs = check_inputs(cfg)
    values, tune_cfg = docs["best"]["hyperparameters"], docs["tune"]
    run_dir = Path(cfg.run_dir)
    out_dir = run_dir / "export"
    split = data.load_split(tune_cfg["seed"], tune_cfg["data"])
    rng = np.random.default_rng(tune_cfg["seed"])
    check_x = inputs.to_inputs(split.x_val[: cfg.check_images]).numpy()
    representative = inputs.to_inputs(
        split.x_train[rng.choice(len(split.y_train), cfg.representative_images, replace=False)]).numpy()

    # 2. Bridge to tf_keras, checked.
    tuned = keras.saving.load_model(run_dir / rundir.BEST_MODEL, safe_mode=True)
    legacy, diff = bridge.to_tf_keras(tuned, values, check_x)
    log(f"bridge: tf_keras rebuild agrees with best.keras (max |p - p'| = {diff:.1e} on {len(check_x)} images)")
    sources = {"tuned": legacy}
    sparsities = {"tuned": 0.0}

    # 3. Prune (and QAT) only when a pruned variant is asked for.
    needed = {RECIPES[v][1] for v in cfg.variants}
    if needed & {"pruned", "pruned_qat"}:
        keras.utils.set_random_seed(tune_cfg["seed"])
        idx = data.stratified_indices(split.y_train, min(cfg.train_subset or len(split.y_train),
                                                         len(split.y_train)), tune_cfg["seed"])
        train_ds = inputs.dataset(split.x_train[idx], split.y_train[idx], cfg.batch_size,
                                    inputs.Augment.from_values(values), seed=tune_cfg["seed"])
        val_ds = inputs.dataset(split.x_val, split.y_val, 1000)
        log(f"prune: to {cfg.sparsity:.0%} sparsity over {cfg.prune_epochs} epochs of fine-tuning")
        pruned = prune_module.strip(prune_module.prune(
            legacy, values, train_ds, val_ds, cfg.sparsity, cfg.prune_epochs, cfg.min_prune_weights,
            callbacks=[runtime.stop_on_interrupt(tf_keras)]))
        sources["pruned"] = pruned
        sparsities["pruned"] = prune_module.sparsity(pruned, cfg.min_prune_weights)
        log(f"prune: measured sparsity {sparsities['pruned']:.3f} of the pruned kernels")
        if "pruned_qat" in needed:
            log(f"quantization-aware training: {cfg.qat_epochs} epochs, pruning preserved")
            qat = quantize_module.quantize(pruned, values, train_ds, val_ds, cfg.qat_epochs,
                                           callbacks=[runtime.stop_on_interrupt(tf_keras)])
            sources["pruned_qat"] = qat
            sparsities["pruned_qat"] = prune_module.sparsity(qat, cfg.min_prune_weights)
            log(f"quantization-aware training: sparsity after {sparsities['pruned_qat']:.3f}")

    # 4. Convert and write each variant; the manifest last, so it only lists whole files.
    manifest = {"run_dir": str(run_dir), "settings": cfg.to_dict(), "packages": package_versions(),
                "bridge_max_abs_diff": diff, "variants": []}
    for name in cfg.variants:
        quantization, source = RECIPES[name]
        model_bytes = tflite.convert(sources[source], quantization, representative)
        path = out_dir / f"{name}.tflite"
        runio.write_bytes(path, model_bytes)
        reference = sources[source].predict(check_x, verbose=0).argmax(1)
        agreement = float((litert.predict(model_bytes, check_x).argmax(1) == reference).mean())
        entry = {
            "name": name,
            "file": path.name,
            "quantization": quantization,
            "pruned": source != "tuned",
            "source": source,
            "sparsity": sparsities[source],
            "bytes": len(model_bytes),
            "gzip_bytes": len(gzip.compress(model_bytes, 9)),
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            **describe_io(model_bytes),
            "agreement_with_source": agreement,
            "settings": {"sparsity": cfg.sparsity, "prune_epochs": cfg.prune_epochs,
                         "qat_epochs": cfg.qat_epochs} if source != "tuned" else {},
        }
        manifest["variants"].append(entry)
        log(f"wrote {path}  {entry['bytes']:,} bytes (gzip {entry['gzip_bytes']:,})  "
            f"input {entry['input']['dtype']}  agrees with its Keras source on {agreement:.1%}")
    # Variants not re-made this time stay listed while their files are unchanged.
    made = {entry["name"] for entry in manifest["variants"]}
    for entry in previous_entries(out_dir):
        if entry["name"] not in made:
            manifest["variants"].append(entry)
    manifest["variants"].sort(key=lambda entry: VARIANTS.index(entry["name"]))
    runio.write_json(out_dir / "manifest.json", manifest)
    return manifest


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
