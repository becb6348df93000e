"""The three forms a data set may come in, read into arrays: a keras.datasets `.npz`, a folder of IDX files,
a folder of image files with one subfolder per class.

Each reader returns a `Raw`: images as stored (any dtype, `N x H x W` or `N x H x W x C`), labels, the test
split where the data has one, class names where it names them. `mnist_opt.data` checks and normalizes them.
Every problem is a `DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_opt.errors import DataError

IDX_FILES = {  # array -> file name in the folder, with or without .gz
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08  # the only element type the image formats here use
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes with no colour
PROGRESS_EVERY = 5000  # images between progress lines while a folder loads
MIN_SIDE, MAX_SIDE = 8, 96  # image sizes the spaces and the microcontroller files are made for (mnist_opt.data)

Log = Callable[[str], None]


@dataclass
class Raw:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str] | None
    form: str  # "npz", "idx" or "folder"
    skipped: int = 0  # unreadable images left out (folders, --skip-bad-images)


def form_of(path: Path) -> str:
    """Which reader a `--data` path takes: a file is an .npz; a folder with IDX files is IDX, else image folders."""
    if path.is_file():
        return "npz"
    if any(_idx_path(path, name) for name in IDX_FILES.values()):
        return "idx"
    return "folder"


# -- .npz ---------------------------------------------------------------------------------------------------

def read_npz(path: Path) -> Raw:
    """x_train, y_train, and optionally x_test, y_test, class_names. Pickled objects are never loaded."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # np.load would try it as a pickle, and refuse that
                raise DataError(f"{path}: cannot be read as .npz (not a zip archive); pass an .npz made with "
                                "numpy.savez, a folder of IDX files, or a folder of class folders")
        with np.load(path, allow_pickle=False) as npz:
            if missing := [k for k in ("x_train", "y_train") if k not in npz.files]:
                raise DataError(f"{path}: missing arrays {missing}; a .npz needs x_train and y_train "
                                "(and optionally x_test, y_test, class_names), as keras.datasets gives them")
            if ("x_test" in npz.files) != ("y_test" in npz.files):
                raise DataError(f"{path}: has only one of x_test and y_test; give both or neither")
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test", "class_names") if k in npz.files}
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(f"{path}: holds pickled Python objects, which are never loaded (they can run code); "
                            "save plain numeric arrays, and class_names as a string array") from None
        raise DataError(f"{path}: cannot be read as .npz ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read as .npz ({exc}); it may be truncated or damaged") from None
    names = arrays.get("class_names")
    if names is not None and names.dtype.kind not in "US":
        raise DataError(f"{path}: class_names has dtype {names.dtype}; expected strings, one per class")
    return Raw(arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
               None if names is None else [str(n) for n in names.reshape(-1)], "npz")


# -- IDX ----------------------------------------------------------------------------------------------------

def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx_file(path: Path, dims: int) -> np.ndarray:
    """One IDX file (gzipped or not) of unsigned bytes with `dims` dimensions: magic, sizes, data, all checked.

    Read straight into the array it returns (writable, one copy), not through a bytes object.
    """
    try:
        with open(path, "rb") as plain:
            gz = plain.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path}: wrong magic number {head.hex()}; an IDX file starts 0000 08 0{dims}")
            if head[2] != IDX_UBYTE or head[3] != dims:
                kind = "images (3 dimensions)" if dims == 3 else "labels (1 dimension)"
                raise DataError(f"{path}: IDX type 0x{head[2]:02x} with {head[3]} dimensions; expected unsigned "
                                f"bytes (0x08) with {dims} for {kind}")
            sizes = f.read(4 * dims)
            if len(sizes) < 4 * dims:
                raise DataError(f"{path}: truncated IDX header")
            shape = tuple(int.from_bytes(sizes[4 * i: 4 * i + 4], "big") for i in range(dims))
            array = np.empty(shape, np.uint8)
            got = f.readinto(memoryview(array).cast("B")) if array.size else 0
            extra = f.read(1)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read ({exc}); it may be truncated") from None
    if got != array.size or extra:
        raise DataError(f"{path}: {got:,}{'+' if extra else ''} bytes of data, expected {array.size:,} for shape "
                        f"{shape}; the file is truncated or not this IDX layout")
    return array


def read_idx(folder: Path) -> Raw:
    """train-images/labels (needed) and t10k-images/labels (optional) in `folder`."""
    paths = {key: _idx_path(folder, name) for key, name in IDX_FILES.items()}
    for key in ("x_train", "y_train"):
        if paths[key] is None:
            raise DataError(f"{folder}: no {IDX_FILES[key]}[.gz]; an IDX folder needs the training images and labels")
    if (paths["x_test"] is None) != (paths["y_test"] is None):
        raise DataError(f"{folder}: has only one of {IDX_FILES['x_test']} and {IDX_FILES['y_test']}; "
                        "give both or neither")
    arrays = {key: None if p is None else read_idx_file(p, 3 if key.startswith("x") else 1) for key, p in paths.items()}
    return Raw(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], None, "idx")


# -- image folders ------------------------------------------------------------------------------------------

def class_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def list_images(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (the subfolders, sorted) and every (image file, class) under `root`."""
    folders = class_folders(root)
    if not folders:
        raise DataError(f"{root}: no class folders; expected one subfolder of images per class "
                        "(or IDX files, or pass an .npz file)")
    files = []
    for label, folder in enumerate(folders):
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise DataError(f"{folder}: class folder with no images ({', '.join(IMAGE_SUFFIXES)}); "
                            "add images or remove the folder")
        files += [(p, label) for p in found]
    return [f.name for f in folders], files


def is_colour(img) -> bool:
    """Whether an image holds colour: its mode, or for a palette image, whether its pixels are not all grey."""
    if img.mode == "P":
        rgb = np.asarray(img.convert("RGB"))
        return not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
    return img.mode not in GRAY_MODES


def as_seen(img, channels: int):
    """A decoded PIL image as a person sees it, in grey (1 channel) or RGB (3): EXIF orientation applied, any
    transparency composited on white. How folder images are read, and how `predict` reads an image."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    return img.convert("RGB" if channels == 3 else "L")


def read_folder(root: Path, size: tuple[int, int] | None, skip_bad: bool, log: Log) -> Raw:
    """One subfolder per class, optionally under train/ and test/ (then both must name the same classes).

    Two passes: the first reads each file once and keeps only its size and colour mode, the second decodes
    each image into one array made for all of them, so memory holds one copy of the images.
    """
    split = (root / "train").is_dir() and (root / "test").is_dir()
    if (root / "train").is_dir() and not split:  # train/ alone: its class folders, with a test split held out
        root = root / "train"
    elif (root / "test").is_dir() and not split:
        raise DataError(f"{root}: has test/ but no train/; put the training images' class folders under train/")
    names, files = list_images(root / "train" if split else root)
    test_files: list[tuple[Path, int]] = []
    if split:
        test_names, test_files = list_images(root / "test")
        if test_names != names:
            raise DataError(f"{root}: train/ has classes {names} but test/ has {test_names}; "
                            "give both the same class folders")
    files, test_files, shape, skipped = _survey(files, test_files, size, skip_bad, root)
    x, y = _decode(files, shape, log, "train" if split else "images")
    x_test, y_test = _decode(test_files, shape, log, "test") if split else (None, None)
    return Raw(x, y, x_test, y_test, names, "folder", skipped)


def _survey(files, test_files, size, skip_bad: bool, root: Path):
    """Check every image's header; the common shape (or `size`); unreadable files named, or skipped and counted."""
    from PIL import Image

    sizes, colour, bad = set(), False, []
    good = {"train": [], "test": []}
    for part, entries in (("train", files), ("test", test_files)):
        for path, label in entries:
            try:
                if path.stat().st_size == 0:
                    raise OSError("zero bytes")
                with Image.open(path) as img:
                    img.load()  # a truncated file fails here, not half-way through the second pass
                    colour |= is_colour(img)
                    sizes.add(as_seen(img, 1).size)  # a phone's EXIF orientation may swap width and height
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                bad.append(f"{path} ({exc})")
                continue
            good[part].append((path, label))
    if bad and not skip_bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise DataError(f"{root}: {len(bad)} unreadable image(s): {'; '.join(bad[:3])}{more}; fix or remove "
                        "them, or pass --skip-bad-images to leave them out (they are counted)")
    if not sizes:
        raise DataError(f"{root}: no readable images; every one was unreadable (and skipped)")
    for part, given in (("train", files), ("test", test_files)):
        if lost := sorted({label for _, label in given} - {label for _, label in good[part]}):
            folder = next(p for p, label in given if label == lost[0]).relative_to(root).parts[:-1]
            raise DataError(f"{root}: every image in {'/'.join(folder)} was unreadable and skipped; fix them, "
                            "or remove the class folder")
    if size is None and len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
        raise DataError(f"{root}: images of {len(sizes)} sizes ({shown}, ...); pass --image-size HxW to resize "
                        "them all to one")
    w, h = next(iter(sizes)) if size is None else (size[1], size[0])
    if size is None and not (MIN_SIDE <= min(w, h) and max(w, h) <= MAX_SIDE):  # refused before any is decoded
        raise DataError(f"{root}: images are {h}x{w}; this toolkit takes {MIN_SIDE}x{MIN_SIDE} to "
                        f"{MAX_SIDE}x{MAX_SIDE}: pass --image-size HxW to resize them")
    return good["train"], good["test"], (h, w, 3 if colour else 1), len(bad)


def _decode(files: list[tuple[Path, int]], shape: tuple[int, int, int], log: Log, part: str):
    from PIL import Image

    h, w, c = shape
    x = np.empty((len(files), h, w, c), np.uint8)
    y = np.empty(len(files), np.int64)
    for i, (path, label) in enumerate(files):
        with Image.open(path) as img:
            img = as_seen(img, c)
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            x[i] = np.asarray(img).reshape(h, w, c)
        y[i] = label
        if (i + 1) % PROGRESS_EVERY == 0 or i + 1 == len(files):
            log(f"data: {part}: {i + 1:,}/{len(files):,} images read")
    return x, y
