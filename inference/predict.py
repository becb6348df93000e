"""An image file made into a model's input, then classified.

How depends on the data the model was trained on, read off the run directory it lies in
(`preparation`, chosen once per model):

- MNIST's digits: a photo or drawing made to look like MNIST. MNIST digits were size-normalized into a
  20x20 box keeping their aspect ratio, then centered by center of mass in a 28x28 image, light ink on a
  dark background; `preprocess` does the same to any image, either polarity.
- Any other data: the image as the stored images were made, resized to the model's height x width
  (bilinear, as `--image-size` resizes the data) in grey or RGB by the model's channels; no polarity
  flip, no centering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_opt import readers, rundir
from mnist_opt.errors import InputError

BOX = 20  # MNIST's digit box
SIDE = 28
CENTER = 14.0
INK = 0.2  # fraction of the contrast range that counts as ink, for cropping and the blank check
MIN_CONTRAST = 30  # grey levels between background and ink below which an image is blank
MOSTLY_TRANSPARENT = 0.5  # fraction of fully transparent pixels above which the alpha channel is the ink
MNIST_SHAPE = (28, 28, 1)
MNIST_INFO = {"source": "MNIST", "form": "mnist", "shape": list(MNIST_SHAPE),  # what a run before data was recorded had
              "class_names": [str(d) for d in range(10)]}


def _opened(source, name: str) -> Image.Image:
    """The image a path or file-like object holds, decoded, as a person sees it (EXIF orientation applied)."""
    try:
        with Image.open(source) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file; pass the path of a PNG or JPEG image") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{name}: not a readable image ({exc}); pass a PNG or JPEG image") from None


def _name(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else "image"


def load_gray(source) -> np.ndarray:
    """A path or file-like object to a float grey array in [0, 255], as a person sees the image.

    The EXIF orientation a phone records is applied. A mostly transparent image (a drawing on a
    transparent canvas) takes its ink from the alpha channel, whatever the stroke's colour; other
    transparency is composited on white.
    """
    img = _opened(source, _name(source))
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        alpha = np.asarray(img.convert("RGBA").getchannel("A"), dtype=np.float32)
        if (alpha == 0).mean() > MOSTLY_TRANSPARENT:
            return alpha  # opaque strokes are the ink: light on dark, as MNIST
    return np.asarray(readers.as_seen(img, 1), dtype=np.float32)


def load_resized(source, shape: tuple[int, int, int], name: str = "image") -> np.ndarray:
    """A path or file-like object to uint8 `shape` (height, width, channels): the image as a person sees it
    (EXIF orientation applied, transparency composited on white), grey for 1 channel or RGB for 3, resized
    bilinear to height x width as `mnist_opt.data.resize` resizes the data."""
    h, w, c = shape
    img = readers.as_seen(_opened(source, name), c)  # as the folder form reads training images
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(h, w, c)


def preprocess(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """A grey image of one digit, any size and polarity, to MNIST's 28x28 uint8 form."""
    def background(a):
        return np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]))

    if background(gray) > 127:  # dark ink on a light background: MNIST is the other way round
        gray = 255.0 - gray
    gray = np.clip(gray - background(gray), 0, None)
    if gray.max() < MIN_CONTRAST:
        raise InputError(f"{name}: blank image (no ink stands out from the background); draw or pick a digit")
    rows, cols = np.nonzero(gray > INK * gray.max())
    crop = gray[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = np.asarray(Image.fromarray(crop / crop.max() * 255.0).resize(size, Image.LANCZOS), dtype=np.float32)
    digit = np.clip(digit, 0, 255)
    # Center of mass to (14, 14), where MNIST's sits (measured: 13.98, 14.01 on average).
    total = digit.sum()
    cy = (digit.sum(axis=1) * np.arange(digit.shape[0])).sum() / total
    cx = (digit.sum(axis=0) * np.arange(digit.shape[1])).sum() / total
    top = int(np.clip(round(CENTER - cy), 0, SIDE - digit.shape[0]))
    left = int(np.clip(round(CENTER - cx), 0, SIDE - digit.shape[1]))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top: top + digit.shape[0], left: left + digit.shape[1]] = digit
    return np.round(out).astype(np.uint8)


@dataclass(frozen=True)
class Preparation:
    """How an image file becomes one model's input, and what its classes are called."""

    shape: tuple[int, int, int]  # height, width, channels the model takes
    class_names: tuple[str, ...]
    digits: bool  # MNIST's digits: the digit normalization (polarity, 20x20 box, centering); else a plain resize

    @property
    def drawing(self) -> bool:
        """Whether a drawing (light strokes on a dark pad) is an input: the model takes grey images."""
        return self.shape[2] == 1

    def __call__(self, source, name: str = "image") -> np.ndarray:
        """The model's input for one image: uint8 28x28 for digits, else uint8 height x width x channels."""
        if self.digits:
            return preprocess(load_gray(source), name)
        return load_resized(source, self.shape, name)

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "class_names": list(self.class_names), "digits": self.digits,
                "drawing": self.drawing}


def preparation(model) -> Preparation:
    """The preparation for an `inference.model.Model`'s images, from the data its run recorded.

    A run from before data was recorded is MNIST. A file outside any run is taken for MNIST digits if it
    takes 28x28 grey images in 10 classes (as every model before other data was), else resized plainly,
    its classes named by number. A model that disagrees with its run's data is refused.
    """
    run = rundir.run_of(model.path)
    if run is None:
        digits = model.input_shape == MNIST_SHAPE and model.classes == 10
        return Preparation(model.input_shape, tuple(str(k) for k in range(model.classes)), digits)
    info = rundir.data_info(run) or MNIST_INFO
    shape, names = tuple(info["shape"]), tuple(info["class_names"])
    if model.input_shape != shape or model.classes != len(names):
        raise InputError(f"model {model.path} takes {_size(model.input_shape)} images in {model.classes} classes, "
                         f"but its run {run} recorded {_size(shape)} images in {len(names)} classes "
                         f"({info['source']}): use a model file that run made, or move this one out of it")
    return Preparation(shape, names, info["form"] == "mnist")


def _size(shape) -> str:
    return "x".join(str(s) for s in shape)


def _ranked(p: np.ndarray, top: int, names: tuple[str, ...]) -> dict:
    ranked = [{"class": int(k), "name": names[k], "probability": float(p[k])} for k in np.argsort(-p)[:top]]
    return {**ranked[0], "top": ranked}


def classify(model, source, name: str, top: int = 1, prepare: Preparation | None = None) -> dict:
    """One image (a path or file-like object) through the model's preparation (`preparation(model)` unless
    given) and the model: the top classes, and the input the model saw."""
    prepare = prepare or preparation(model)
    image = prepare(source, name)
    return {"image": name, **_ranked(model.probabilities(image[np.newaxis])[0], top, prepare.class_names),
            "input": image}


def predict(model, images: list, top: int = 1) -> list[dict]:
    """Classify image files (paths) with an `inference.model.Model`, in one batch: each one's top classes
    (index, name and probability)."""
    prepare = preparation(model)
    batch = np.stack([prepare(p, str(p)) for p in images])
    return [{"image": str(path), **_ranked(p, top, prepare.class_names)}
            for path, p in zip(images, model.probabilities(batch))]
