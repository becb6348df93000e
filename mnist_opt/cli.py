"""The `mnist-opt` command line: parse options, call one library function, print the result.

Stage modules are imported inside the commands, so `mnist-opt --help` never
imports TensorFlow.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from mnist_opt.errors import InputError, MnistOptError
from mnist_opt.export.config import VARIANTS, ExportConfig as E  # plain dataclasses: no TensorFlow import
from mnist_opt.reports.config import ReportConfig as R
from mnist_opt.tuning.config import TuneConfig as T

app = typer.Typer(help="Tune, prune, quantize and compare MNIST digit classifiers.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


class TunerName(str, Enum):
    hyperband = "hyperband"
    pareto = "pareto"
    random = "random"
    bayesian = "bayesian"


def _default_run_dir() -> str:
    return str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))


def _echo(line: str) -> None:
    typer.echo(line)


def _call(fn, *args, tensorflow: bool = True, **kwargs):
    """Run library code; turn the project's errors into a message and an exit code.

    `tensorflow=False` for the commands that may run on LiteRT alone: they import it only if a
    .keras file needs it (`inference.model.Model`).
    """
    from mnist_opt import runtime

    try:
        with runtime.interruptible():
            if tensorflow:
                runtime.quiet_tensorflow()
            result = fn(*args, **kwargs)
            runtime.raise_if_interrupted()  # a Ctrl-C that Python lost on the way
            return result
    except MnistOptError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:  # a full disk, a file that vanished: not the user's input, but their machine
        typer.echo(f"Error: {exc.strerror or exc} ({exc.filename or 'no file named'}); "
                   "finished work is kept: fix this and run the same command again", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        command = " ".join(shlex.quote(a) for a in ["mnist-opt", *sys.argv[1:]])
        typer.echo(f"\ninterrupted; finished work is kept. Resume with:\n  {command}", err=True)
        raise typer.Exit(130) from None


DATA_HELP = ("Your images: an .npz (x_train, y_train, optional x_test, y_test, class_names), a folder of IDX files, "
             "or a folder of class folders (optionally under train/ and test/). Default: MNIST.")
IMAGE_SIZE_HELP = "Resize every image to H or HxW pixels (8 to 96 a side; default: the data's own size)."
SKIP_BAD_HELP = "Leave unreadable image files out of a folder (they are counted) instead of refusing it."


def _image_size(text: str | None) -> str | None:
    """--image-size checked and written as HxW, or exit 2 naming the problem."""
    if text is None:
        return None
    from mnist_opt.data import parse_image_size

    try:
        h, w = parse_image_size(text)
    except InputError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    return f"{h}x{w}"


ARENA_HELP = ("Skip models whose TensorFlow Lite Micro arena (RAM) would be larger, in KB: planned by TFLite Micro "
              "on each design before training.")
MACS_HELP = "Skip models with more multiply-accumulates per image (compute: latency and energy), before training."
OBJECTIVES_HELP = ("What --tuner pareto's front trades accuracy against: accuracy,flash (default), accuracy,arena or "
                   "accuracy,flash,arena.")
DEVICE_HELP = ("A device profile (built-in: cortex-m0plus, cortex-m4f, esp32-s3; or a .toml file): sets --max-kb, "
               "--max-arena-kb and --max-macs to its share for the model unless given; the report says what fits it.")


@app.command()
def tune(
    space: str = typer.Option(T.space, help="Search space: a built-in name (default, tiny, wide, quick, frontier) or a .toml path."),
    tuner: TunerName = typer.Option(TunerName(T.tuner), help="Search algorithm; pareto: Hyperband that promotes "
                                    "by validation accuracy and flash size together (the accuracy-size front)."),
    starts: bool = typer.Option(T.starts, help="Train the space's [[start]] designs first; --no-starts: only "
                                "what the tuner draws."),
    max_trials: Optional[int] = typer.Option(None, min=1, help="Trials at most (default: 20; Hyperband: its schedule)."),
    max_epochs: int = typer.Option(T.max_epochs, min=1, help="Epochs per trial at most."),
    train_subset: int = typer.Option(T.train_subset, min=100, help="Images per trial epoch, drawn on through all training images."),
    final_epochs: int = typer.Option(T.final_epochs, min=1, help="Epochs for retraining the best model on all training images."),
    max_params: Optional[int] = typer.Option(None, min=1, help="Skip models with more parameters, before training."),
    max_kb: Optional[float] = typer.Option(None, min=1, help="Skip models whose flash form (the int8 file as a microcontroller stores it) would be larger "
                                           "(estimated before training; KB = 1,024 bytes)."),
    clusters: Optional[int] = typer.Option(None, min=2, max=128, help="Count sizes (--max-kb, --budgets) as the "
                                           "clustered variant's flash form: kernels clustered to this many values, "
                                           "stored as 1-7-bit indices. Export with the same --clusters."),
    search_minutes: Optional[float] = typer.Option(None, min=0.1, help="Start no trial once the trials took this "
                                                   "many minutes (resume with a larger value to go on)."),
    final_minutes: Optional[float] = typer.Option(None, min=0.1, help="Retrain within this many minutes: pass over "
                                                  "winners that could not do half the epochs in it, stop in time."),
    budgets: Optional[str] = typer.Option(None, metavar="KB,KB,...", help="Size budgets in KB of the flash form, "
                                          "e.g. 8,16,32,64: retrain each one's best model into RUN/frontier/<K>kb/ "
                                          "instead of one winner (use with --tuner pareto)."),
    finalists: int = typer.Option(T.finalists, min=1, help="With --budgets: retrain each budget's N best designs "
                                  "that fit and keep the best retrained one (N retrains a budget)."),
    max_arena_kb: Optional[float] = typer.Option(None, min=0.5, help=ARENA_HELP),
    max_macs: Optional[int] = typer.Option(None, min=1, help=MACS_HELP),
    objectives: Optional[str] = typer.Option(None, metavar="accuracy,flash[,arena]", help=OBJECTIVES_HELP),
    device: Optional[str] = typer.Option(None, metavar="NAME|FILE.toml", help=DEVICE_HELP),
    seed: int = typer.Option(T.seed, help="Seed for the split, the search and every trial."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    image_size: Optional[str] = typer.Option(None, metavar="H[xW]", help=IMAGE_SIZE_HELP),
    skip_bad_images: bool = typer.Option(False, help=SKIP_BAD_HELP),
    run_dir: Optional[Path] = typer.Option(None, help="Where every output goes (default: runs/<timestamp>)."),
    overwrite: bool = typer.Option(False, help="Clear the run directory's tuning outputs and start afresh."),
    chief: Optional[str] = typer.Option(None, metavar="HOST:PORT", help="Distributed: run the oracle here; "
                                        "workers join with --worker HOST:PORT."),
    worker: Optional[str] = typer.Option(None, metavar="HOST:PORT", help="Distributed: run trials for this chief."),
    worker_id: Optional[str] = typer.Option(None, help="This worker's name, unique in the search (with --worker)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Distributed on this machine: a chief and N worker "
                                          "processes on 127.0.0.1, the cores divided between them."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads TensorFlow may use (default: all)."),
):
    """Search CNN hyperparameters with Keras Tuner; save the retrained best model.

    Example: mnist-opt tune --tuner random --max-trials 10 --run-dir runs/first
    """
    roles = [name for name, given in (("--chief", chief), ("--worker", worker), ("--workers", workers)) if given]
    if len(roles) > 1 or (worker is None) != (worker_id is None):
        typer.echo(f"Error: {' and '.join(roles) or '--worker-id'}: use one of --chief, --worker (with --worker-id) "
                   "or --workers", err=True)
        raise typer.Exit(2)
    if roles and search_minutes is not None:
        typer.echo(f"Error: --search-minutes works in one process, not with {roles[0]}; use --max-trials", err=True)
        raise typer.Exit(2)
    cfg = T(space=space, tuner=tuner.value, starts=starts, max_trials=max_trials, max_epochs=max_epochs,
                     train_subset=train_subset, final_epochs=final_epochs, seed=seed, max_params=max_params,
                     clusters=clusters, data=str(data) if data else None, image_size=_image_size(image_size),
                     skip_bad_images=skip_bad_images, run_dir=str(run_dir or _default_run_dir()),
                     overwrite=overwrite, search_minutes=search_minutes, final_minutes=final_minutes,
                     budgets=_budgets(budgets), finalists=finalists,
                     **_limits(device, max_kb, max_arena_kb, max_macs, objectives))

    def go():
        from mnist_opt.runtime import set_threads

        set_threads(threads)
        if worker:
            from mnist_opt import workflow

            return workflow.worker(cfg, worker, worker_id, _echo)
        from mnist_opt.runio import locked

        with locked(cfg.run_dir):  # the chief holds the run directory; its workers do not need it
            from mnist_opt import workflow

            if chief or workers:
                return workflow.chief(cfg, chief or "127.0.0.1:0", _echo, workers or 0)
            return workflow.tune(cfg, _echo)

    result = _call(go)
    if worker:
        typer.echo(f"worker {worker_id} done: {result['completed']} trials completed here")
        return
    if cfg.budgets:
        typer.echo(f"done: {result.counts['completed']} trials completed; one model per budget in "
                   f"{result.run_dir / 'frontier'} (frontier.json lists them)")
        return
    typer.echo(f"done: {result.counts['completed']} trials completed; best model in {result.run_dir / 'best.keras'}")


def _limits(device: str | None, max_kb: float | None, max_arena_kb: float | None, max_macs: int | None,
            objectives: str | None) -> dict:
    """The device options as TuneConfig fields, or exit 2 naming the problem. Options given win over the profile's."""
    from mnist_opt.tuning.config import parse_objectives

    try:
        out = {"max_kb": max_kb, "max_arena_kb": max_arena_kb, "max_macs": max_macs}
        if objectives is not None:
            out["objectives"] = parse_objectives(objectives)
        if device is not None:
            from mnist_opt import devices

            profile = devices.load(device)
            out |= {k: v if out[k] is None else out[k] for k, v in profile.limits().items()}
            out["device"] = profile.to_dict()
        return out
    except InputError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None


def _budgets(text: str | None) -> tuple[float, ...] | None:
    """--budgets parsed, or exit 2 naming the problem."""
    if text is None:
        return None
    from mnist_opt.tuning.config import parse_budgets

    try:
        return parse_budgets(text)
    except InputError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def train(
    run_dir: Optional[Path] = typer.Option(None, help="Where baseline.keras goes (default: runs/<timestamp>)."),
    epochs: int = typer.Option(10, min=1, help="Epochs at most (early stopping on validation)."),
    seed: int = typer.Option(0, help="Seed for the split and the weights."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    image_size: Optional[str] = typer.Option(None, metavar="H[xW]", help=IMAGE_SIZE_HELP),
    skip_bad_images: bool = typer.Option(False, help=SKIP_BAD_HELP),
):
    """Train the original project's reference CNN (the report's baseline row).

    Example: mnist-opt train --run-dir runs/first --epochs 5
    """

    def go():
        from mnist_opt.data import Source
        from mnist_opt.tuning.train import train_baseline

        source = Source.of({"data": str(data) if data else None, "image_size": _image_size(image_size),
                            "skip_bad_images": skip_bad_images})
        return train_baseline(Path(run_dir or _default_run_dir()), epochs, seed, source, _echo)

    path = _call(go)
    typer.echo(f"done: baseline model in {path}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory with a finished tuning (best.keras)."),
    sparsity: float = typer.Option(E.sparsity, help="Target fraction of zero weights in pruned kernels, in [0, 1)."),
    prune_epochs: int = typer.Option(E.prune_epochs, min=1, help="Fine-tuning epochs while pruning."),
    qat_epochs: int = typer.Option(E.qat_epochs, min=0, help="Quantization-aware fine-tuning epochs."),
    clusters: Optional[int] = typer.Option(None, help="Shared values per clustered kernel (2-128: TFLite Micro's "
                                            "look-up tables index at most 7 bits; default: the run's tune "
                                            "--clusters, else 16)."),
    cluster_epochs: int = typer.Option(E.cluster_epochs, min=0, help="Fine-tuning epochs of the clustering."),
    variants: str = typer.Option(",".join(VARIANTS), help="Comma-separated variants to write."),
    train_subset: Optional[int] = typer.Option(None, min=100, help="Fine-tuning images (default: all 54,000)."),
):
    """Prune, cluster, quantize and convert a run's best model to TFLite variants under RUN/export/.

    Every full-integer file is also checked in TFLite Micro and written as C++ under RUN/export/micro/.

    Example: mnist-opt export runs/first --sparsity 0.8 --clusters 16 --variants int8,clustered_int8
    """
    cfg = E(run_dir=str(run_dir), sparsity=sparsity, prune_epochs=prune_epochs, qat_epochs=qat_epochs,
            clusters=clusters, cluster_epochs=cluster_epochs,
            variants=tuple(v.strip() for v in variants.split(",") if v.strip()), train_subset=train_subset)

    def go():
        from mnist_opt.export.export import export as run_export
        from mnist_opt.runio import locked

        with locked(run_dir, create=False):  # a missing run directory is refused by the stage
            return run_export(cfg, _echo)

    manifest = _call(go)
    typer.echo(f"done: {len(manifest['variants'])} variants and manifest.json in {run_dir / 'export'}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A tuned and exported run directory."),
    latency_runs: int = typer.Option(R.latency_runs, min=1, help="Timed batch-1 runs per model."),
    micro_images: Optional[int] = typer.Option(None, min=1, help="Run each int8 file in TFLite Micro on the "
                                               "first N test images only (default: all; each takes milliseconds)."),
    max_kb: Optional[float] = typer.Option(None, min=1, help="Size budget for the recommended variant "
                                           "(default: the run's tune --max-kb)."),
    data: Optional[Path] = typer.Option(None, help="Where the run's data is now, if it moved (default: where "
                                        "config.json says; the same data is checked by its content hash)."),
):
    """Measure every model of a run on its test images (MNIST's 10,000 by default); write report.json/.md/.html.

    Example: mnist-opt report runs/first
    """

    def go():
        from mnist_opt.runio import locked
        from mnist_opt.reports.report import report as run_report

        with locked(run_dir, create=False):
            return run_report(R(run_dir=str(run_dir), latency_runs=latency_runs, micro_images=micro_images,
                                 max_kb=max_kb, data=str(data) if data else None), _echo)

    _print_report(_call(go), run_dir)


def _print_report(doc: dict, run_dir: Path) -> None:
    typer.echo(doc["table"])
    if "frontier" in doc:
        typer.echo(f"report: {run_dir / 'report.html'} (also report.md, report.json; each budget's own report in "
                   f"{run_dir / 'frontier'})")
        return
    typer.echo(f"recommended: {doc['recommended']}\nreport: {run_dir / 'report.html'} (also report.md, report.json)")


class PresetName(str, Enum):
    quick = "quick"
    standard = "standard"
    full = "full"
    frontier = "frontier"


@app.command()
def run(
    preset: PresetName = typer.Option(PresetName.standard, help="quick: a few minutes; standard: the main job; "
                                      "full: more search, longer training; frontier: one model per size budget "
                                      "(8, 16, 32, 64 KB)."),
    run_dir: Optional[Path] = typer.Option(None, help="Where every output goes (default: runs/<timestamp>). "
                                           "Run again with the same directory to resume."),
    seed: Optional[int] = typer.Option(None, help="Seed (default: the preset's, 0)."),
    max_kb: Optional[float] = typer.Option(None, min=1, help="Only models whose flash form fits in this many KB "
                                           "(estimated before training); the report recommends within it."),
    budgets: Optional[str] = typer.Option(None, metavar="KB,KB,...", help="Size budgets in KB of the flash form, "
                                          "e.g. 8,16,32,64: search the accuracy-size front and export each "
                                          "budget's best model under RUN/frontier/<K>kb/."),
    max_arena_kb: Optional[float] = typer.Option(None, min=0.5, help=ARENA_HELP),
    max_macs: Optional[int] = typer.Option(None, min=1, help=MACS_HELP),
    objectives: Optional[str] = typer.Option(None, metavar="accuracy,flash[,arena]", help=OBJECTIVES_HELP),
    device: Optional[str] = typer.Option(None, metavar="NAME|FILE.toml", help=DEVICE_HELP),
    micro_images: Optional[int] = typer.Option(None, min=1, help="The report runs each int8 file in TFLite Micro "
                                               "on the first N test images only (default: all)."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    image_size: Optional[str] = typer.Option(None, metavar="H[xW]", help=IMAGE_SIZE_HELP),
    skip_bad_images: bool = typer.Option(False, help=SKIP_BAD_HELP),
):
    """Tune, export and report in one go; print where the report is.

    Example: mnist-opt run --preset quick --run-dir runs/demo
    """
    target = run_dir or Path(_default_run_dir())
    sizes = _budgets(budgets)
    source = {"data": str(data) if data else None, "image_size": _image_size(image_size),
              "skip_bad_images": skip_bad_images}
    limits = _limits(device, max_kb, max_arena_kb, max_macs, objectives)

    def go():
        from mnist_opt.workflow import run as run_workflow
        from mnist_opt.runio import locked

        with locked(target):
            return run_workflow(preset.value, str(target), seed, _echo, limits.pop("max_kb"), sizes, micro_images,
                                source, limits)

    _print_report(_call(go), target)


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="A .keras or .tflite model file."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP + " Default: the data of the run the model is in, "
                                        "else MNIST."),
    image_size: Optional[str] = typer.Option(None, metavar="H[xW]", help=IMAGE_SIZE_HELP),
    skip_bad_images: bool = typer.Option(False, help=SKIP_BAD_HELP),
):
    """Test accuracy, per-class accuracy and confusion matrix of one model file.

    Example: mnist-opt evaluate runs/first/export/int8.tflite --json
    """
    size = _image_size(image_size)
    if (size or skip_bad_images) and not data:
        typer.echo("Error: --image-size and --skip-bad-images apply to --data; without it the model's run's data "
                   "is read as it was tuned (or MNIST)", err=True)
        raise typer.Exit(2)

    def go():
        from mnist_opt.data import Source
        from mnist_opt.reports.evaluate import evaluate as run_evaluate

        given = Source.of({"data": str(data), "image_size": size, "skip_bad_images": skip_bad_images}) if data else None
        return run_evaluate(model, given)

    result = _call(go, tensorflow=False)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['model']}: test accuracy {100 * result['accuracy']:.2f}% on {result['images']:,} images")
    typer.echo("per class: " + "  ".join(f"{name}:{'-' if a is None else f'{100 * a:.1f}'}"
                                         for name, a in zip(result["class_names"], result["per_class_accuracy"])))
    typer.echo(f"confusion (rows true class 0-{len(result['confusion']) - 1}, columns predicted):")
    for row in result["confusion"]:
        typer.echo(" ".join(f"{n:5d}" for n in row))


@app.command()
def predict(
    model: Path = typer.Argument(..., help="A .keras or .tflite model file."),
    images: list[Path] = typer.Argument(..., help="PNG or JPEG images, one thing each: for an MNIST model a digit "
                                        "of any size or polarity; for other data, resized to the model's input."),
    top: int = typer.Option(1, min=1, max=10, help="How many classes to list per image."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
):
    """Classify images the way the model's training data was stored (digits: the way MNIST was made).

    Example: mnist-opt predict runs/first/export/int8.tflite seven.png --top 3
    """

    def go():
        from mnist_opt.inference.model import Model
        from mnist_opt.inference.predict import predict as run_predict

        return run_predict(Model(model), images, top)

    results = _call(go, tensorflow=False)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for r in results:
        typer.echo(f"{r['image']}: " + ", ".join(f"{t['name']} ({100 * t['probability']:.1f}%)" for t in r["top"]))


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="A run directory with exported models."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; the default is reachable from this machine only."),
):
    """Upload an image (or draw one, for grey data) in the browser; see each exported model's prediction live.

    Example: mnist-opt serve runs/first --port 8000, then open http://127.0.0.1:8000
    """

    def go():
        from mnist_opt.inference.serve import App, make_server

        try:
            return make_server(App(run_dir), host, port)
        except OSError as exc:  # port taken, address not ours: the user's option, not their machine
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                             "pick another --port, or --port 0 for any free one") from None

    server = _call(go, tensorflow=False)
    bound_host, bound_port = server.server_address[:2]
    if not _loopback(bound_host):
        typer.echo(f"warning: --host {host} is reachable from other machines, and the page has no "
                   "authentication: anyone who can reach it can use it", err=True)
    typer.echo(f"serving {run_dir} on http://{bound_host}:{bound_port}/  (report: /report; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.server_close()


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main() -> None:
    app()
