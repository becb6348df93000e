"""The report's figures, as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of (size, accuracy) points that no other point beats on both, by increasing size."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -1.0
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def accuracy_vs_size(rows: list[dict], recommended: str | None) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(r["gzip_bytes"] / 1024, 100 * r["test_accuracy"]) for r in rows]
    for r, (x, y) in zip(rows, points):
        ax.scatter(x, y, s=60 if r["name"] == recommended else 30,
                   marker="*" if r["name"] == recommended else "o")
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = pareto(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("gzip size (KiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs size")
    ax.legend()
    return _png(fig)


def search_history(trials: list[dict]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    done = [(i, t["val_accuracy"]) for i, t in enumerate(trials, 1) if t["status"] == "completed"]
    if done:
        xs, ys = zip(*done)
        best = [max(ys[: k + 1]) for k in range(len(ys))]
        ax.scatter(xs, [100 * y for y in ys], s=14, label="trial")
        ax.step(xs, [100 * b for b in best], where="post", label="best so far")
        ax.set_ylim(max(0, 100 * min(ys) - 2), 100.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial (in the order run)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Search")
    ax.legend()
    return _png(fig)


def confusion(matrix: list[list[int]], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                        color="white" if i == j else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _png(fig)
