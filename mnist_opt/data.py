"""The data set: found, read, checked, made into one form, split. MNIST by default; any small image
classification data set with `--data` (a keras.datasets `.npz`, a folder of IDX files, or a folder of
images with one subfolder per class: `mnist_opt.readers`).

Every image comes out as uint8 `N x H x W x C` (C = 1 or 3), every label an int in 0..K-1. The training
images are split into train and validation here, once, with a seed. Data without a test split has one
held out first (stratified, with its own fixed seed, so that every run on the data shares it). Search and
model selection see train and validation only; the test images are returned only by `load_test`, which
the report and `evaluate` call.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_opt import readers
from mnist_opt.errors import DataError

# sha256 over the raw bytes of x_train, y_train, x_test, y_test, in that order.
CONTENT_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
BUNDLED = Path(__file__).parent / "assets" / "mnist.npz"
KERAS_CACHE = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"
VALIDATION_FRACTION = 0.1  # of the training images: MNIST's 6,000 of 60,000
TEST_FRACTION = 0.15  # held out of data that comes without a test split
HOLDOUT_SEED = 0  # the held-out test split's: the same for every run on the same data
MIN_SIDE, MAX_SIDE = readers.MIN_SIDE, readers.MAX_SIDE  # image sizes the spaces and the device files are made for

Log = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """What `--data`, `--image-size` and `--skip-bad-images` ask for: where the data is and how to read it."""

    path: str | None = None  # None: MNIST ($MNIST_NPZ, the bundled copy, Keras' cache)
    image_size: tuple[int, int] | None = None  # (height, width) to resize to; None: the data's own
    skip_bad_images: bool = False  # leave unreadable image files out (counted) instead of refusing the folder

    @classmethod
    def of(cls, cfg: dict) -> "Source":
        """The source a run's tuning settings (config.json's "tune") name; older runs: MNIST as given."""
        return cls(cfg.get("data"), parse_image_size(cfg.get("image_size")), bool(cfg.get("skip_bad_images")))


@dataclass(frozen=True)
class Info:
    """What a run records about its data (config.json's "data"), and what the stages adapt to."""

    source: str
    form: str  # "mnist", "npz", "idx" or "folder"
    shape: tuple[int, int, int]  # height, width, channels of every image
    class_names: tuple[str, ...]
    content_sha256: str  # of the arrays as the stages see them (after any resize)
    test: str  # "given" or "held out"
    images: dict  # per part: train (before validation is split off), test
    skipped: int = 0

    @property
    def classes(self) -> int:
        return len(self.class_names)

    @property
    def digits(self) -> bool:
        """MNIST's digits: drawing and photo preprocessing (polarity, centering) and digit augmentation apply."""
        return self.form == "mnist"

    def to_dict(self) -> dict:
        return {"source": self.source, "form": self.form, "shape": list(self.shape), "classes": self.classes,
                "class_names": list(self.class_names), "content_sha256": self.content_sha256, "test": self.test,
                "test_split": None if self.test == "given" else {"fraction": TEST_FRACTION, "seed": HOLDOUT_SEED,
                                                                  "stratified": True},
                "images": self.images, "skipped_images": self.skipped}


@dataclass(frozen=True)
class Split:
    """Train and validation arrays drawn from the data's training images."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_index: np.ndarray  # positions in the training images (after any held-out test split)
    val_index: np.ndarray
    info: Info

    @property
    def source(self) -> str:
        return self.info.source

    @property
    def content_sha256(self) -> str:
        return self.info.content_sha256


def check_recorded(info: Info, recorded: str | None, run: str) -> None:
    """Refuse data whose content is not what the run at `run` was tuned on (`recorded`: its config.json's hash):
    files changed since, or `--data` names other data. A held-out test split would be drawn anew from it."""
    if recorded and info.content_sha256 != recorded:
        raise DataError(f"{info.source}: not the data {run} was tuned on (content sha256 {info.content_sha256[:12]}..., "
                        f"the run's {recorded[:12]}...): its files changed since, or --data names other data; "
                        "pass the data the run was tuned on, with the same --image-size")


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """'32' or '32x48' (height x width) -> (32, 32) or (32, 48), each side 8 to 96."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
    size = (int(m[1]), int(m[2] or m[1])) if m else None
    if size is None or not all(MIN_SIDE <= s <= MAX_SIDE for s in size):
        raise DataError(f"--image-size: expected H or HxW with each side {MIN_SIDE} to {MAX_SIDE} pixels, "
                        f"e.g. 32 or 32x48; got {text!r}")
    return size


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """The data to use: `path`, then $MNIST_NPZ, then the bundled MNIST, then Keras' cache.

    Keras' download is the last resort, for installs that dropped the bundled file.
    """
    explicit = path or os.environ.get("MNIST_NPZ")
    if explicit:
        explicit = Path(explicit)
        if not explicit.exists():
            raise DataError(f"data {explicit}: no such file or folder; pass --data PATH to an .npz file, a folder "
                            "of IDX files or a folder of class folders (or unset MNIST_NPZ to use MNIST)")
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


@dataclass(frozen=True)
class Loaded:
    arrays: dict  # x_train, y_train, x_test, y_test (test held out already, where the data had none)
    info: Info


def load(source: Source | str | None = None, log: Log = lambda line: None) -> Loaded:
    """Read, check and normalize the data `source` names; hold out a test split if it has none."""
    source = source if isinstance(source, Source) else Source(source)
    path = resolve_path(source.path)
    form = readers.form_of(path)
    if form == "npz":
        raw = readers.read_npz(path)
    elif form == "idx":
        raw = readers.read_idx(path)
    else:
        raw = readers.read_folder(path, source.image_size, source.skip_bad_images, log)
    where = str(path)
    x_train, y_train = images(raw.x_train, "x_train", where, source.image_size), labels(raw.y_train, "y_train", where)
    _same_length(x_train, y_train, "x_train", "y_train", where)
    test = "given" if raw.x_test is not None else "held out"
    if raw.x_test is not None:
        x_test, y_test = images(raw.x_test, "x_test", where, source.image_size), labels(raw.y_test, "y_test", where)
        _same_length(x_test, y_test, "x_test", "y_test", where)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(f"{where}: test images are {_size(x_test)}, training images {_size(x_train)}; give "
                            "both one size, or pass --image-size HxW to resize both")
    names = _class_names(raw.class_names, y_train, None if raw.x_test is None else y_test, where)
    form, skipped, given_test = raw.form, raw.skipped, raw.x_test is not None
    del raw  # from here on, the images are held once (and once more while the test split is taken out)
    if not given_test:
        test_index = stratified_indices(y_train, round(TEST_FRACTION * len(y_train)), HOLDOUT_SEED)
        keep = np.setdiff1d(np.arange(len(y_train)), test_index)
        x_train, y_train, x_test, y_test = _parts(x_train, y_train, keep, test_index)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    digest = content_sha256(arrays)
    mnist = digest == CONTENT_SHA256
    info = Info(where, "mnist" if mnist else form, tuple(int(s) for s in x_train.shape[1:]), tuple(names),
                digest, test, {"train": int(len(y_train)), "test": int(len(y_test))}, skipped)
    return Loaded(arrays, info)


def _parts(x: np.ndarray, y: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple:
    """(x[first], y[first], x[second], y[second]): `x` reordered in place and cut in two views, so that the
    images are never held twice (`first` and `second` together are every row once)."""
    order = np.concatenate([first, second])
    if not x.flags.writeable:
        x = x.copy()
    permute_rows(x, order)
    y = y[order]
    return x[: len(first)], y[: len(first)], x[len(first):], y[len(first):]


def permute_rows(a: np.ndarray, order: np.ndarray) -> None:
    """a[i] = (a before)[order[i]] for every i, in place: each cycle of the permutation with one spare row."""
    done = np.zeros(len(order), bool)
    for start in range(len(order)):
        if done[start]:
            continue
        spare, i = a[start].copy(), start
        while True:
            done[i] = True
            j = int(order[i])
            if j == start:
                a[i] = spare
                break
            a[i] = a[j]
            i = j


def images(x: np.ndarray, name: str, where: str, size: tuple[int, int] | None) -> np.ndarray:
    """Images as uint8 N x H x W x C: uint8 as given, other integers in 0..255, floats in [0, 1] times 255 rounded
    (the model's int8 input has 256 levels anyway); resized to `size` if given."""
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{where}: {name} has shape {x.shape}; expected N x H x W (grey) or N x H x W x C "
                        "with C = 1 (grey) or 3 (RGB)")
    if len(x) == 0:
        raise DataError(f"{where}: {name} holds no images")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise DataError(f"{where}: {name} holds NaN or infinite values; float images must be in [0, 1]")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(f"{where}: {name} holds floats from {lo:g} to {hi:g}; float images must be in [0, 1] "
                            "(or store uint8 0..255)")
        x = np.round(x * 255).astype(np.uint8)
    elif x.dtype.kind in "iu" and x.dtype != np.uint8:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: {name} holds integers from {lo} to {hi}; integer images must be 0..255")
        x = x.astype(np.uint8)
    elif x.dtype != np.uint8:
        raise DataError(f"{where}: {name} has dtype {x.dtype}; expected uint8 (0..255) or float (0..1)")
    if size is not None and tuple(x.shape[1:3]) != size:
        x = resize(x, size)
    h, w = x.shape[1:3]
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise DataError(f"{where}: images are {h}x{w}; this toolkit takes {MIN_SIDE}x{MIN_SIDE} to "
                        f"{MAX_SIDE}x{MAX_SIDE}: pass --image-size HxW to resize them")
    return x


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 N x H x W x C images to `size` (height, width), bilinear, one image at a time into one new array."""
    from PIL import Image

    h, w = size
    out = np.empty((len(x), h, w, x.shape[-1]), np.uint8)
    for i, image in enumerate(x):
        img = Image.fromarray(image[..., 0] if x.shape[-1] == 1 else image)
        out[i] = np.asarray(img.resize((w, h), Image.BILINEAR)).reshape(h, w, x.shape[-1])
    return out


def labels(y: np.ndarray, name: str, where: str) -> np.ndarray:
    """Labels as a 1-D array of ints (uint8 up to 256 classes, as MNIST's)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: {name} has shape {y.shape}; expected one integer label per image "
                        "(not one-hot rows)")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.equal(np.round(y), y).all():
            raise DataError(f"{where}: {name} holds values that are not integers; labels are class numbers 0..K-1")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise DataError(f"{where}: {name} has dtype {y.dtype}; labels are integers 0..K-1")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{where}: {name} holds label {int(y.min())}; labels are class numbers 0..K-1")
    return y.astype(np.uint8) if not len(y) or int(y.max()) < 256 else y.astype(np.int32)


def _class_names(given: list[str] | None, y_train: np.ndarray, y_test: np.ndarray | None, where: str) -> list[str]:
    k = len(given) if given is not None else int(y_train.max()) + 1
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if y is not None and len(y) and int(y.max()) >= k:
            raise DataError(f"{where}: {name} holds label {int(y.max())}, outside 0..{k - 1} "
                            f"({k} class names)" if given is not None else
                            f"{where}: {name} holds label {int(y.max())}, outside the training labels' 0..{k - 1}")
    counts = np.bincount(y_train, minlength=k)
    if k < 2 or (counts > 0).sum() < 2:
        raise DataError(f"{where}: the training labels hold one class; a classifier needs at least two")
    if empty := np.flatnonzero(counts == 0).tolist():
        raise DataError(f"{where}: class {empty[0]} has no training images (labels skip it); number the "
                        "classes 0..K-1 with no gaps")
    names = given if given is not None else [str(i) for i in range(k)]
    if len(set(names)) != len(names):
        raise DataError(f"{where}: class_names repeats a name; give each class its own")
    return names


def _same_length(x, y, xn: str, yn: str, where: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{where}: {xn} holds {len(x):,} images but {yn} {len(y):,} labels; give one label per image")


def _size(x: np.ndarray) -> str:
    return f"{x.shape[1]}x{x.shape[2]}x{x.shape[3]}"


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in ("x_train", "y_train", "x_test", "y_test"):
        h.update(memoryview(np.ascontiguousarray(arrays[key])).cast("B"))  # no bytes copy of the images
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


def load_split(seed: int, source: Source | str | None = None, log: Log = lambda line: None) -> Split:
    """Seeded, stratified train/validation split of the training images only."""
    loaded = load(source, log)
    y = loaded.arrays["y_train"]
    val_index = stratified_indices(y, round(VALIDATION_FRACTION * len(y)), seed)
    train_index = np.setdiff1d(np.arange(len(y)), val_index)
    x_train, y_train, x_val, y_val = _parts(loaded.arrays["x_train"], y, train_index, val_index)
    return Split(x_train, y_train, x_val, y_val, train_index, val_index, loaded.info)


def load_test(source: Source | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The test images and labels: for the report and `evaluate`, never for selection."""
    arrays = load(source).arrays
    return arrays["x_test"], arrays["y_test"]
