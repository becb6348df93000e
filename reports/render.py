"""How the reports look: one place turns rows into table cells, markdown and self-contained html."""

from __future__ import annotations

import base64
import html

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
         "td:first-child,th:first-child{text-align:left}tr.rec{background:#fff6d5;font-weight:bold}"
         "img{max-width:100%;margin:1em 0}")

# A run's table: one row per model (reports.variants).
HEAD = ("model", "kind", "test acc %", "params", "bytes", "gzip bytes", "vs float32", "sparsity",
        "agrees w/ tuned %", "median µs", "p95 µs", "flash bytes", "arena bytes", "TFLM acc %")


def cells(r: dict) -> list[str]:
    """A run's row as both tables show it."""
    ratio = f"{r['size_vs_float32']:.2f}x" if r["size_vs_float32"] else "-"
    return [r["name"], r["kind"], f"{100 * r['test_accuracy']:.2f}",
            f"{r['params']:,}", f"{r['bytes']:,}", f"{r['gzip_bytes']:,}", ratio, f"{r['sparsity']:.2f}",
            f"{100 * r['agreement_with_tuned']:.2f}", f"{r['median_us']:,.0f}", f"{r['p95_us']:,.0f}",
            *micro_cells(r)]


def micro_cells(row: dict) -> list[str]:
    """The flash form's bytes, arena and TFLite Micro accuracy: '-' for rows that are not full-integer files."""
    m = row.get("micro")
    if m is None:
        return ["-", "-", "-"]
    f = m["forms"].get("flash")
    if f is None or f["test_accuracy"] is None:
        why = ", ".join(m["unsupported_ops"]) or (f or {}).get("error") or m["error"]
        return [f"{f['bytes']:,}" if f else "-", "-", f"cannot run: {why}"]
    return [f"{f['bytes']:,}", f"{f['arena_bytes']:,}", f"{100 * f['test_accuracy']:.2f}"]


# The recommended file's accuracy per class, by the data's class names.
CLASS_HEAD = ("class", "name", "test images", "test acc %", "most often taken for")


def class_cells(row: dict, names: list[str]) -> list[list[str]]:
    out = []
    for i, (name, acc, counts) in enumerate(zip(names, row["per_class_accuracy"], row["confusion"])):
        wrong = [(n, j) for j, n in enumerate(counts) if j != i and n]
        confused = f"{names[max(wrong)[1]]} ({max(wrong)[0]:,})" if wrong else "-"
        out.append([str(i), name, f"{sum(counts):,}", "-" if acc is None else f"{100 * acc:.2f}", confused])
    return out


# Each full-integer file's flash forms (reports.variants): flash against RAM.
FORMS_HEAD = ("model", "form", "flash bytes", "arena bytes", "TFLM acc %", "outputs unlike the int8 file's")


def forms_cells(row: dict) -> list[list[str]]:
    """One line per flash form of a full-integer row, the int8 file itself first."""
    m = row.get("micro")
    if m is None or not m["runs"]:
        return []
    lines = [[row["name"], "int8 file", f"{m['int8_bytes']:,}", f"{m['arena_bytes']:,}",
              f"{100 * m['test_accuracy']:.2f}", "-"]]
    for form, f in m["forms"].items():
        what = "flash (C arrays)" if form == "flash" else form
        lines.append([row["name"], what, f"{f['bytes']:,}", f"{f['arena_bytes']:,}" if f["arena_bytes"] else "-",
                      f"{100 * f['test_accuracy']:.2f}" if f["test_accuracy"] is not None else f"cannot run: {f['error']}",
                      f"{f['differ']:,} of {m['images']:,}" if f["differ"] is not None else "-"])
    return lines


# Each full-integer file against the run's device profile (`mnist_opt.devices`, `--device`): fits, margins, latency.
DEVICE_HEAD = ("model", "fits", "flash bytes / limit (margin)", "arena bytes / limit (margin)", "MACs / limit",
               "est. ms, reference kernels", "est. ms, optimized kernels")


def device_cells(label: str, fit: dict) -> list[str]:
    """One file's `Device.fit` as both tables show it; a negative margin is how far over the limit it is."""
    used = lambda n, limit, margin: f"{n:,} / {limit:,} ({margin:+,})"  # noqa: E731
    arena = ("not measured" if fit["arena_bytes"] is None
             else used(fit["arena_bytes"], fit["arena_limit_bytes"], fit["arena_margin_bytes"]))
    flash = used(fit["flash_bytes"], fit["flash_limit_bytes"], fit["flash_margin_bytes"])
    return [label, "yes" if fit["fits"] else "no", flash, arena, used(fit["macs"], fit["max_macs"], fit["macs_margin"]),
            f"{fit['latency_ms']['reference']:,.1f}", f"{fit['latency_ms']['optimized']:,.1f}"]


def device_note(device: dict) -> str:
    """What the device table measures against: the profile's limits and where its latency figures come from."""
    cycles = device["cycles_per_mac"]
    return (f"{device['description']}. The model may take {100 * device['model_flash_share']:g}% of "
            f"the flash and {100 * device['model_ram_share']:g}% of the RAM (the TFLite Micro arena), the rest is the "
            f"application's; the MAC limit is {device['max_latency_ms']:g} ms of {device['kernels']} kernels. "
            f"Flash and arena are the flash form's, measured. Latency is an estimate, not a measurement: the model's "
            f"multiply-accumulates per image at {device['clock_mhz']:g} MHz, {cycles['reference']:g} cycles a MAC with "
            f"TFLite Micro's reference kernels and {cycles['optimized']:g} with {device['kernels']} (the built-in "
            f"profiles' sources: mnist_opt/assets/devices.toml, docs/microcontrollers.md).")


# A frontier's table: one row per budget (reports.budgets).
BUDGET_HEAD = ("budget", "file", "flash bytes", "arena bytes", "TFLM acc %", "int8 file bytes", "params",
               "test acc %", "median µs", "val % start / searched")


def budget_cells(row: dict) -> list[str]:
    """A frontier row as both tables show it."""
    if "file" not in row:
        return [f"{row['budget_kb']:g} KB", f"none fits: {row['reason']}", *["-"] * 8]
    tflm = row.get("micro_test_accuracy")
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
    added = f"{pct(row.get('start_val_accuracy'))} / {pct(row.get('searched_val_accuracy'))}"
    return [f"{row['budget_kb']:g} KB", row["file"], f"{row['flash_bytes']:,}",
            f"{row['arena_bytes']:,}" if row["arena_bytes"] else "-", f"{100 * tflm:.2f}" if tflm is not None else "-",
            f"{row['int8_bytes']:,}", f"{row['params']:,}", f"{100 * row['test_accuracy']:.2f}",
            f"{row['median_us']:,.0f}", added + (" ★" if row.get("searched_beat_starts") else "")]


def markdown_table(head, rows: list[list[str]], highlight: list[bool] | None = None) -> str:
    """A markdown table; a highlighted row (the recommended model) is bold and starred."""
    highlight = highlight or [False] * len(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join([f"**{r[0]}** ★" if h else r[0], *r[1:]]) + " |"
                               for r, h in zip(rows, highlight)])


def html_table(head, rows: list[list[str]], highlight: list[bool] | None = None) -> str:
    """An html table; a highlighted row (the recommended model) is marked and starred."""
    highlight = highlight or [False] * len(rows)
    body = [("<tr class=\"rec\">" if h else "<tr>")
            + "".join(f"<td>{html.escape(c)}</td>" for c in ([f"{r[0]} ★", *r[1:]] if h else r)) + "</tr>"
            for r, h in zip(rows, highlight)]
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>\n"
            + "\n".join(body) + "</table>")


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def page(title: str, intro: str, table: str, figures: list[str], after: str = "") -> str:
    """A self-contained html page: title, `intro` (html), the table, figures, and `after` (html)."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{intro}{table}\n"
            + "\n".join(figures) + f"\n{after}</body></html>\n")
