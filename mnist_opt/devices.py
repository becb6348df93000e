"""Device profiles (`--device NAME|FILE.toml`): a board's flash, RAM and clock, the share of each the model may
take, and the cycles an int8 multiply-accumulate costs with TensorFlow Lite Micro's reference kernels and with
the core's optimized ones.

    built-ins    mnist_opt/assets/devices.toml, one table per device, each figure's source beside it
    a user file  one board as top-level keys; `extends = "<built-in>"` takes that profile and changes the keys
                 given, without it every key is required

A profile gives the search its limits (`limits`) and the report each file's fit and estimated latency (`fit`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from mnist_opt.errors import InputError

KB = 1024
BUILTINS = Path(__file__).parent / "assets" / "devices.toml"
KERNELS = ("reference", "optimized")  # the keys of cycles_per_mac
SIZES = ("flash_kb", "ram_kb", "clock_mhz", "max_latency_ms")
SHARES = ("model_flash_share", "model_ram_share")
TEXTS = ("name", "description", "kernels")


@dataclass(frozen=True)
class Device:
    """One board: what the model may use of it, and what a multiply-accumulate costs on it."""

    name: str  # e.g. "cortex-m0plus"
    description: str  # the core, clock, memories and a real part that has them
    flash_kb: float
    ram_kb: float
    clock_mhz: float
    model_flash_share: float  # of the flash the model may take; the rest is the application's (0 < share <= 1)
    model_ram_share: float  # of the RAM the TensorFlow Lite Micro arena may take
    max_latency_ms: float  # what the MAC limit is derived from
    kernels: str  # the optimized kernel library for this core: "CMSIS-NN", "ESP-NN", ...
    cycles_per_mac: dict  # {"reference": float, "optimized": float}: cycles per int8 multiply-accumulate

    def limits(self) -> dict:
        """The search's limits for this board, as TuneConfig fields: --max-kb, --max-arena-kb, --max-macs."""
        return {"max_kb": self.flash_kb * self.model_flash_share, "max_arena_kb": self.ram_kb * self.model_ram_share,
                "max_macs": int(self.max_latency_ms / 1000 * self.clock_mhz * 1e6 / self.cycles_per_mac["optimized"])}

    def latency_ms(self, macs: int, kernels: str = "optimized") -> float:
        """An estimate: `macs` at this board's clock with the reference or the optimized kernels."""
        if kernels not in KERNELS:
            raise ValueError(f"kernels: expected one of {', '.join(KERNELS)}, got {kernels!r}")
        return macs * self.cycles_per_mac[kernels] / (self.clock_mhz * 1e3)

    def fit(self, flash_bytes: int, arena_bytes: int | None, macs: int) -> dict:
        """Whether a file fits this board's limits, and by how much (a negative margin: over by that much).

        `arena_bytes` None: not measured (TensorFlow Lite Micro could not run the file), so it does not fit.
        """
        limits = self.limits()
        flash_limit, arena_limit = int(limits["max_kb"] * KB), int(limits["max_arena_kb"] * KB)
        arena_margin = None if arena_bytes is None else arena_limit - arena_bytes
        flash_margin, macs_margin = flash_limit - flash_bytes, limits["max_macs"] - macs
        fits = flash_margin >= 0 and arena_margin is not None and arena_margin >= 0 and macs_margin >= 0
        return {"fits": fits,
                "flash_bytes": flash_bytes, "flash_limit_bytes": flash_limit, "flash_margin_bytes": flash_margin,
                "arena_bytes": arena_bytes, "arena_limit_bytes": arena_limit, "arena_margin_bytes": arena_margin,
                "macs": macs, "max_macs": limits["max_macs"], "macs_margin": macs_margin,
                "latency_ms": {k: self.latency_ms(macs, k) for k in KERNELS}}

    def to_dict(self) -> dict:
        """What config.json records (`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Device":
        return _device(d, "the recorded device profile")


def names() -> list[str]:
    """The built-in profiles' names."""
    return list(_builtins())


def load(spec: str) -> Device:
    """A built-in profile by name, or the board a .toml file describes."""
    builtins = _builtins()
    if spec in builtins:
        return _device(builtins[spec], str(BUILTINS))
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"--device {spec!r}: no such built-in profile or file; use one of {', '.join(builtins)}, "
                         "or a path to a .toml file describing the board")
    doc = _read(path)
    base = doc.pop("extends", None)
    if base is None:
        return _device(doc, str(path))
    if base not in builtins:
        raise InputError(f"{path}: extends: expected one of {', '.join(builtins)}, got {base!r}")
    merged = {**builtins[base], "name": path.stem, **doc}
    if isinstance(doc.get("cycles_per_mac"), dict):  # change one kernel's figure, keep the other's
        merged["cycles_per_mac"] = {**builtins[base]["cycles_per_mac"], **doc["cycles_per_mac"]}
    return _device(merged, str(path))


def _builtins() -> dict[str, dict]:
    return {name: {"name": name, **table} for name, table in _read(BUILTINS).items()}


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the device profile ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc}); fix the file") from exc


def _device(d: dict, where: str) -> Device:
    """A validated Device from a profile's keys; InputError naming the key, the value and what is expected."""
    fields = (*TEXTS, *SIZES, *SHARES, "cycles_per_mac")
    if unknown := sorted(set(d) - set(fields)):
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: extends, {', '.join(fields)}")
    if missing := [f for f in fields if f not in d]:
        raise InputError(f"{where}: {missing[0]} is missing (a board without `extends` needs every key: "
                         f"{', '.join(fields)})")
    for key in TEXTS:
        if not isinstance(d[key], str) or not d[key].strip():
            raise InputError(f"{where}: {key}: expected a non-empty string, got {d[key]!r}")
    for key in SIZES:
        if not _positive(d[key]):
            raise InputError(f"{where}: {key}: expected a positive number, got {d[key]!r}")
    for key in SHARES:
        if not _number(d[key]) or not 0 < d[key] <= 1:
            raise InputError(f"{where}: {key}: expected a fraction in (0, 1], the model's share, got {d[key]!r}")
    cycles = d["cycles_per_mac"]
    if not isinstance(cycles, dict) or set(cycles) != set(KERNELS) or not all(map(_positive, cycles.values())):
        raise InputError(f"{where}: cycles_per_mac: expected {{ reference = <positive number>, optimized = "
                         f"<positive number> }}, got {cycles!r}")
    return Device(**{**d, **{k: float(d[k]) for k in (*SIZES, *SHARES)},
                     "cycles_per_mac": {k: float(cycles[k]) for k in KERNELS}})


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value) -> bool:
    return _number(value) and math.isfinite(value) and value > 0
