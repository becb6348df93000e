"""The `mnist-opt` command line: parse options, call one library function, print the result.

Stage modules are imported inside the commands, so `mnist-opt --help` never
imports TensorFlow.
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from mnist_opt.errors import MnistOptError
from export.config import VARIANTS, ExportConfig as E  # plain dataclasses: no TensorFlow import
from tuning.config import TuneConfig as T

app = typer.Typer(help="Tune, prune, quantize and compare MNIST digit classifiers.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


class TunerName(str, Enum):
    hyperband = "hyperband"
    random = "random"
    bayesian = "bayesian"


def _default_run_dir() -> str:
    return str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))


def _echo(line: str) -> None:
    typer.echo(line)


def _call(fn, *args, **kwargs):
    """Run library code; turn the project's errors into a message and an exit code."""
    from mnist_opt.runtime import quiet_tensorflow

    try:
        quiet_tensorflow()
        return fn(*args, **kwargs)
    except MnistOptError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


DATA_HELP = "MNIST .npz file (default: $MNIST_NPZ, then the bundled copy, then Keras' cache)."


@app.command()
def tune(
    space: str = typer.Option(T.space, help="Search space: a built-in name (default, tiny) or a .toml path."),
    tuner: TunerName = typer.Option(TunerName(T.tuner), help="Search algorithm."),
    max_trials: Optional[int] = typer.Option(None, min=1, help="Trials at most (default: 20; Hyperband: its schedule)."),
    max_epochs: int = typer.Option(T.max_epochs, min=1, help="Epochs per trial at most."),
    train_subset: int = typer.Option(T.train_subset, min=100, help="Training images per trial during the search."),
    final_epochs: int = typer.Option(T.final_epochs, min=1, help="Epochs for retraining the best model on all training images."),
    max_params: Optional[int] = typer.Option(None, min=1, help="Skip models with more parameters, before training."),
    seed: int = typer.Option(T.seed, help="Seed for the split, the search and every trial."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    run_dir: Optional[Path] = typer.Option(None, help="Where every output goes (default: runs/<timestamp>)."),
    overwrite: bool = typer.Option(False, help="Clear the run directory's tuning outputs and start afresh."),
):
    """Search CNN hyperparameters with Keras Tuner; save the retrained best model.

    Example: mnist-opt tune --tuner random --max-trials 10 --run-dir runs/first
    """
    cfg = T(space=space, tuner=tuner.value, max_trials=max_trials, max_epochs=max_epochs,
                     train_subset=train_subset, final_epochs=final_epochs, seed=seed, max_params=max_params,
                     data=str(data) if data else None, run_dir=str(run_dir or _default_run_dir()),
                     overwrite=overwrite)

    def go():
        from tuning.search import tune as run_tune

        return run_tune(cfg, _echo)

    result = _call(go)
    typer.echo(f"done: {result.counts['completed']} trials completed; best model in {result.run_dir / 'best.keras'}")


@app.command()
def train(
    run_dir: Optional[Path] = typer.Option(None, help="Where baseline.keras goes (default: runs/<timestamp>)."),
    epochs: int = typer.Option(10, min=1, help="Epochs at most (early stopping on validation)."),
    seed: int = typer.Option(0, help="Seed for the split and the weights."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
):
    """Train the original project's reference CNN (the report's baseline row).

    Example: mnist-opt train --run-dir runs/first --epochs 5
    """

    def go():
        from tuning.train import train_baseline

        return train_baseline(Path(run_dir or _default_run_dir()), epochs, seed, str(data) if data else None, _echo)

    path = _call(go)
    typer.echo(f"done: baseline model in {path}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory with a finished tuning (best.keras)."),
    sparsity: float = typer.Option(E.sparsity, help="Target fraction of zero weights in pruned kernels, in [0, 1)."),
    prune_epochs: int = typer.Option(E.prune_epochs, min=1, help="Fine-tuning epochs while pruning."),
    qat_epochs: int = typer.Option(E.qat_epochs, min=0, help="Quantization-aware fine-tuning epochs."),
    variants: str = typer.Option(",".join(VARIANTS), help="Comma-separated variants to write."),
    train_subset: Optional[int] = typer.Option(None, min=100, help="Fine-tuning images (default: all 54,000)."),
):
    """Prune, quantize and convert a run's best model to TFLite variants under RUN/export/.

    Example: mnist-opt export runs/first --sparsity 0.8 --variants int8,pruned_int8
    """
    cfg = E(run_dir=str(run_dir), sparsity=sparsity, prune_epochs=prune_epochs, qat_epochs=qat_epochs,
            variants=tuple(v.strip() for v in variants.split(",") if v.strip()), train_subset=train_subset)

    def go():
        from export.run import export as run_export

        return run_export(cfg, _echo)

    manifest = _call(go)
    typer.echo(f"done: {len(manifest['variants'])} variants and manifest.json in {run_dir / 'export'}")


def main() -> None:
    app()
