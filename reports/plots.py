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
        ax.legend()
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial (in the order run)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Search")
    return _png(fig)


def confusion(matrix: list[list[int]], title: str, names: list[str] | None = None) -> bytes:
    """The matrix, counts written in up to 20 classes, the axes labelled with the class names."""
    k = len(matrix)
    names = names or [str(i) for i in range(k)]
    side = min(12, 5 + 0.12 * k)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            if n and k <= 20:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                        color="white" if i == j else "black")
    small = 8 if k <= 20 else 5
    ax.set_xticks(range(k), names, rotation=90 if max(map(len, names)) > 2 else 0, fontsize=small)
    ax.set_yticks(range(k), names, fontsize=small)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _png(fig)


def frontier(trials: list[dict], files: list[dict], rows: list[dict], floor: float = 95.0) -> bytes:
    """Every trial's (estimated flash KB, val accuracy) in grey (coloured by its arena where it was measured:
    `--max-arena-kb`, `--objectives ...,arena`), every exported int8 file's (flash KB, test
    accuracy) on top, the budgets as vertical lines, and each budget's file labelled in a row of its own
    (so that no two labels overlap). Points under `floor` percent are left off the chart."""
    fig, ax = plt.subplots(figsize=(8, 5))
    completed = [t for t in trials if t["status"] == "completed"]
    done = [(t["est_flash_bytes"] / 1024, 100 * t["val_accuracy"]) for t in completed]
    arenas = [t.get("arena_bytes") for t in completed]
    if done and all(a is not None for a in arenas):  # the arena measured (a limit or objective): the third axis, as colour
        points = ax.scatter(*zip(*done), s=14, c=[a / 1024 for a in arenas], cmap="viridis",
                            label="trial (estimated size, val accuracy; colour: arena)")
        fig.colorbar(points, ax=ax, label="TensorFlow Lite Micro arena (KB)")
    elif done:
        ax.scatter(*zip(*done), s=14, color="0.7", label="trial (estimated size, val accuracy)")
    if files:
        ax.scatter([f["flash_bytes"] / 1024 for f in files], [100 * f["test_accuracy"] for f in files], s=22,
                   color="tab:blue", label="exported int8 file (flash form's size, test accuracy)")
    chosen = [r for r in rows if "file" in r]
    for r in rows:
        ax.axvline(r["budget_kb"], color="tab:red", lw=0.8, ls=":")
    for i, r in enumerate(chosen):
        x, y = r["flash_bytes"] / 1024, 100 * r["test_accuracy"]
        ax.scatter([x], [y], s=90, marker="*", color="tab:orange", zorder=3)
        ax.annotate(f"{r['budget_kb']:g} KB: {r['variant']} {y:.2f}% in {r['flash_bytes']:,} B", (x, y),
                    xytext=(0.02, 0.06 + 0.07 * i), textcoords="axes fraction", fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6})
    lowest = min([y for _, y in done] + [100 * f["test_accuracy"] for f in files], default=floor)
    ax.set_ylim(min(max(floor, lowest), min((100 * f["test_accuracy"] for f in files), default=100)) - 0.2, 100.05)
    ax.set_xscale("log")
    ax.set_xticks(sorted({r["budget_kb"] for r in rows}))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("flash form size (KB, log scale); dotted: the budgets")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy-size frontier")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
