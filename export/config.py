"""Settings of the export stage: every default in one place, each with its reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass

VARIANTS = ("float32", "dynamic_range", "float16", "int8", "pruned_float32", "pruned_int8", "pruned_qat_int8",
            "clustered_int8", "pruned_clustered_qat_int8")


DEFAULT_CLUSTERS = 16  # 4-bit indices in the flash form, within ~0.1 point of unclustered


@dataclass(frozen=True)
class ExportConfig:
    run_dir: str
    sparsity: float = 0.8  # the usual 75-85% band: large gzip savings, accuracy recovers in a few epochs
    prune_epochs: int = 4  # fine-tuning while sparsity ramps up (first 70%) and then holds
    qat_epochs: int = 2  # quantization-aware fine-tuning starts from the pruned weights; little is needed
    clusters: int | None = None  # shared values per clustered kernel; None: the run's `tune --clusters`, else 16
    cluster_epochs: int = 2  # fine-tuning of the centroids (and of the sparsity-preserving clustering)
    variants: tuple[str, ...] = VARIANTS
    batch_size: int = 128  # as in tuning
    train_subset: int | None = None  # fine-tuning images; None: the whole train split, as the retrain used
    representative_images: int = 500  # train-split images that calibrate full-integer quantization
    check_images: int = 500  # validation images for the bridge check and the agreement figures
    min_prune_weights: int = 1000  # smaller kernels (first conv) stay dense: they cost accuracy, save no bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["variants"] = list(self.variants)
        return d
