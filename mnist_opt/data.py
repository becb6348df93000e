"""MNIST, offline: find the file, prove it is the real MNIST, split it.

The training images are split into train and validation here, once, with a
seed. Search and model selection see only those two; the 10,000 test images
are returned only by `load_test`, which the report stage calls.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_opt.errors import DataError

# sha256 over the raw bytes of x_train, y_train, x_test, y_test, in that order.
CONTENT_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
SHAPES = {
    "x_train": ((60000, 28, 28), np.uint8),
    "y_train": ((60000,), np.uint8),
    "x_test": ((10000, 28, 28), np.uint8),
    "y_test": ((10000,), np.uint8),
}
BUNDLED = Path(__file__).parent / "assets" / "mnist.npz"
KERAS_CACHE = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"
VALIDATION_SIZE = 6000


@dataclass(frozen=True)
class Split:
    """Train and validation arrays drawn from MNIST's 60,000 training images."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_index: np.ndarray  # positions in the original x_train
    val_index: np.ndarray
    source: str
    content_sha256: str


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """The MNIST file to use: `path`, then $MNIST_NPZ, then the bundled copy, then Keras' cache.

    Keras' download is the last resort, for installs that dropped the bundled file.
    """
    explicit = path or os.environ.get("MNIST_NPZ")
    if explicit:
        explicit = Path(explicit)
        if not explicit.is_file():
            raise DataError(f"MNIST file {explicit}: no such file; pass --data PATH to a copy of mnist.npz "
                            "or unset MNIST_NPZ to use the bundled copy")
        return explicit
    for candidate in (BUNDLED, KERAS_CACHE):
        if candidate.is_file():
            return candidate
    return _download()


def _download() -> Path:
    try:
        import keras

        return Path(keras.utils.get_file(
            "mnist.npz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"))
    except Exception as exc:  # network errors come in many types; all mean the same here
        raise DataError(f"MNIST: the bundled copy {BUNDLED} is missing and the download failed ({exc}); "
                        "reinstall the package or pass --data PATH to a copy of mnist.npz") from exc


def load_arrays(path: str | os.PathLike | None = None) -> tuple[dict[str, np.ndarray], Path, str]:
    """Load and verify all four MNIST arrays; return them, the file used and its content hash."""
    path = resolve_path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in SHAPES if k not in npz.files]
            if missing:
                raise DataError(f"MNIST file {path}: missing arrays {missing}; expected "
                                f"{list(SHAPES)} as in keras.datasets.mnist")
            arrays = {k: npz[k] for k in SHAPES}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"MNIST file {path}: cannot be read as .npz ({exc}); it may be truncated. "
                        "Expected the mnist.npz that keras.datasets.mnist.load_data() uses") from exc
    for key, (shape, dtype) in SHAPES.items():
        got = arrays[key]
        if got.shape != shape or got.dtype != dtype:
            raise DataError(f"MNIST file {path}: {key} has shape {got.shape} dtype {got.dtype}, "
                            f"expected shape {shape} dtype {np.dtype(dtype)}")
    digest = content_sha256(arrays)
    if digest != CONTENT_SHA256:
        raise DataError(f"MNIST file {path}: content sha256 {digest} does not match MNIST's {CONTENT_SHA256}; "
                        "the file is not the canonical MNIST")
    return arrays, path, digest


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in SHAPES:
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` positions of `labels`, each class in proportion, chosen with `seed`; sorted."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / len(labels)
    take = np.floor(quota).astype(int)
    # Largest remainders get the few images that flooring left over.
    take[np.argsort(-(quota - take), kind="stable")[: size - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def load_split(seed: int, path: str | os.PathLike | None = None, val_size: int = VALIDATION_SIZE) -> Split:
    """Seeded, stratified train/validation split of MNIST's training images only."""
    arrays, source, digest = load_arrays(path)
    x, y = arrays["x_train"], arrays["y_train"]
    val_index = stratified_indices(y, val_size, seed)
    train_index = np.setdiff1d(np.arange(len(y)), val_index)
    return Split(x[train_index], y[train_index], x[val_index], y[val_index],
                 train_index, val_index, str(source), digest)


def load_test(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images and labels: for the report, never for selection."""
    arrays, _, _ = load_arrays(path)
    return arrays["x_test"], arrays["y_test"]
