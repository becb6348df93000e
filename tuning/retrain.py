"""A chosen trial retrained on the whole train split with the recipe, saved as a finished tune."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mnist_opt import data, rundir, runio
from mnist_opt.tuning import train
from mnist_opt.tuning.config import TuneConfig
from mnist_opt.tuning.limits import estimated_flash

Log = Callable[[str], None]


def retrain(cfg: TuneConfig, space, split: data.Split, out_dir: Path, best: dict, minutes: float | None,
            log: Log) -> dict:
    """Retrain trial `best` on the whole train split with the recipe; save out_dir/best.keras and best_hparams.json.

    `minutes`: the retrain's measured length at --final-epochs (with --final-minutes), which plans its schedule.
    """
    # The schedule is planned for the epochs that fit in --final-minutes: a cosine cut short ends hot.
    epochs = cfg.final_epochs if minutes is None else train.epochs_in(
        cfg.final_minutes, minutes / cfg.final_epochs, cfg.final_epochs)

    # Validation picks the epoch kept.
    log(f"retraining trial {best['id']} on {len(split.y_train):,} images for {epochs} epochs"
        + (f" (what fits in {cfg.final_minutes:g} min)" if cfg.final_minutes is not None else ""))
    model, history = train.train(best["hyperparameters"], split, epochs, cfg.batch_size, cfg.seed, log,
                                 cfg.final_minutes)
    doc = {
        "trial_id": best["id"],
        "hyperparameters": best["hyperparameters"],
        "params": model.count_params(),
        "est_flash_bytes": estimated_flash(best["hyperparameters"], cfg),
        "search_val_accuracy": best["val_accuracy"],
        "val_accuracy": max(history["val_accuracy"]),
        "epochs_trained": len(history["val_accuracy"]),
        "space": space.name,
    }

    # Save: the model, then the document that says it is finished.
    with runio.atomic_path(out_dir / rundir.BEST_MODEL) as tmp:
        model.save(tmp)
    runio.write_json(out_dir / rundir.BEST_HPARAMS, doc)
    log(f"best model: {out_dir / rundir.BEST_MODEL}  val_accuracy {doc['val_accuracy']:.4f}  params {doc['params']:,}")
    return doc
