"""A photo or drawing of a digit, made to look like MNIST, then classified.

MNIST digits were size-normalized into a 20x20 box keeping their aspect
ratio, then centered by center of mass in a 28x28 image, light ink on a dark
background. `preprocess` does the same to any image, either polarity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_opt.errors import InputError

BOX = 20  # MNIST's digit box
SIDE = 28
CENTER = 14.0
INK = 0.2  # fraction of the contrast range that counts as ink, for cropping and the blank check
MIN_CONTRAST = 30  # grey levels between background and ink below which an image is blank


MOSTLY_TRANSPARENT = 0.5  # fraction of fully transparent pixels above which the alpha channel is the ink


def load_gray(source) -> np.ndarray:
    """A path or file-like object to a float grey array in [0, 255], as a person sees the image.

    The EXIF orientation a phone records is applied. A mostly transparent image (a drawing on a
    transparent canvas) takes its ink from the alpha channel, whatever the stroke's colour; other
    transparency is composited on white.
    """
    name = str(source) if isinstance(source, (str, Path)) else "image"
    try:
        with Image.open(source) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                img = img.convert("RGBA")
                alpha = np.asarray(img.getchannel("A"), dtype=np.float32)
                if (alpha == 0).mean() > MOSTLY_TRANSPARENT:
                    return alpha  # opaque strokes are the ink: light on dark, as MNIST
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return np.asarray(img.convert("L"), dtype=np.float32)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file; pass the path of a PNG or JPEG image") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{name}: not a readable image ({exc}); pass a PNG or JPEG of one digit") from None


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


def _ranked(p: np.ndarray, top: int) -> dict:
    order = np.argsort(-p)[:top]
    return {"digit": int(order[0]), "probability": float(p[order[0]]),
            "top": [{"digit": int(d), "probability": float(p[d])} for d in order]}


def classify(model, source, name: str, top: int = 1) -> dict:
    """One image (a path or file-like object) through MNIST preprocessing and the model: the top digits,
    and the 28x28 input the model saw."""
    image = preprocess(load_gray(source), name)
    return {"image": name, **_ranked(model.probabilities(image[np.newaxis])[0], top), "input": image}


def predict(model, images: list, top: int = 1) -> list[dict]:
    """Classify image files (paths) with an `inference.model.Model`, in one batch: the top digits and probabilities."""
    batch = np.stack([preprocess(load_gray(p), str(p)) for p in images])
    return [{"image": str(path), **_ranked(p, top)} for path, p in zip(images, model.probabilities(batch))]
