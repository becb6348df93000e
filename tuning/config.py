"""Settings of the tuning stage: every default in one place, each with its reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mnist_opt.errors import InputError

# Fields the `tune` command line does not set (the presets and the library may): every other field
# is its `--field-name` option, which is how `distributed.worker_command` passes it on.
CLI_HIDDEN = ("trial_batch_size", "batch_size")


# Fields added since runs were first recorded, with what a run recorded before them was made with (MNIST as it
# is): a resumed older run compares equal on them.
ADDED_FIELDS = {"image_size": None, "skip_bad_images": False, "max_arena_kb": None, "max_macs": None,
                "objectives": ["accuracy", "flash"], "device": None, "finalists": 1}

# What --tuner pareto can trade accuracy against (`--objectives`): the flash form's estimated bytes, and the
# TensorFlow Lite Micro arena the design needs (measured before training, `tuning.limits`).
OBJECTIVES = ("accuracy", "flash", "arena")


@dataclass(frozen=True)
class TuneConfig:
    space: str = "default"  # built-in name or path; `default` covers the classic CNN design choices
    starts: bool = True  # train the space's [[start]] designs first: a sound model within seconds
    tuner: str = "hyperband"  # spends little on bad trials: most get 1-2 epochs, the best get max_epochs
    max_trials: int | None = None  # None: 20 for random/bayesian, Hyperband's own schedule for hyperband
    max_epochs: int = 9  # per trial; Hyperband at 9 tries 17 models (after the starts), most for 1-3 epochs
    train_subset: int | None = 12000  # images per trial epoch, from all 54k: ranks models at ~1/4 of the cost
    final_epochs: int = 15  # the winner's retrain on all 54k images: its schedule's length (fewer if --final-minutes cuts it)
    trial_batch_size: int = 32  # more updates per image: a first-round trial (1 epoch) learns enough to be ranked
    batch_size: int = 128  # the retrain's: more images a second than 32; larger bought no more (docs/performance.md)
    seed: int = 0  # fixes the split, the trial order and every trial's initial weights
    max_params: int | None = None  # models above this are skipped before training
    max_kb: float | None = None  # models whose estimated flash form is larger (KB = 1,024 bytes) are skipped too
    # Models whose TensorFlow Lite Micro arena (planned by TFLite Micro on the design converted with random weights,
    # before training: `tuning.limits`) or multiply-accumulates per image are over these are skipped too.
    max_arena_kb: float | None = None
    max_macs: int | None = None
    objectives: tuple[str, ...] = ("accuracy", "flash")  # what --tuner pareto's front is over (OBJECTIVES)
    device: dict | None = None  # the device profile the limits came from (`mnist_opt.devices`), as recorded
    # The flash form that --max-kb, the budgets and the Pareto search count: with N, the clustered variant's
    # (kernels clustered to N values, stored as LUT indices: export/flash.py); None, the int8 file's.
    clusters: int | None = None
    data: str | None = None  # an .npz, a folder of IDX files or of class folders (mnist_opt.data); None: MNIST
    image_size: str | None = None  # "H" or "HxW": resize every image to it; None: the data's own size
    skip_bad_images: bool = False  # leave unreadable image files out of a folder (counted) instead of refusing it
    run_dir: str = ""  # filled in by the CLI: runs/<timestamp> unless given
    overwrite: bool = False  # start afresh instead of resuming the run directory
    search_minutes: float | None = None  # no trial starts once the trials took this long; None: no limit
    final_minutes: float | None = None  # retrain budget: winners predicted slower are passed over; training stops in time
    # Size budgets in KB of the flash form: one model retrained per budget (RUN/frontier/<K>kb/), instead of one winner.
    budgets: tuple[float, ...] | None = None
    # With budgets: retrain each budget's best N designs that fit (by the search's validation accuracy) and keep the
    # best retrained one. The search ranks designs on short trials of a subset, which favour designs that learn fast.
    finalists: int = 1

    def hyperband(self) -> bool:
        """Whether the tuner runs Hyperband's brackets (which ignore max_trials unless it is given)."""
        return self.tuner in ("hyperband", "pareto")

    def trials_limit(self) -> int | None:
        if self.max_trials is not None:
            return self.max_trials
        return None if self.hyperband() else 20

    def to_dict(self) -> dict:
        d = asdict(self)
        d["budgets"] = None if self.budgets is None else list(self.budgets)  # as JSON gives it back
        d["objectives"] = list(self.objectives)
        return d

    def measures_arena(self) -> bool:
        """Whether each trial's design is converted before training to learn its arena (the arena limit or objective)."""
        return self.max_arena_kb is not None or "arena" in self.objectives

    def search_settings(self) -> dict:
        """The settings that decide a search's results; resuming with others is refused."""
        d = self.to_dict()
        # The device profile only sets the limits, which are settings themselves: it is the report's.
        for key in ("run_dir", "overwrite", "final_epochs", "final_minutes", "search_minutes", "budgets", "device",
                    "finalists"):
            d.pop(key)
        return d


def parse_objectives(text: str) -> tuple[str, ...]:
    """'accuracy,flash,arena' -> ('accuracy', 'flash', 'arena'): accuracy first, then one or two of flash and arena."""
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    if (len(parts) < 2 or parts[0] != "accuracy" or len(set(parts)) != len(parts)
            or any(p not in OBJECTIVES for p in parts)):
        raise InputError(f"--objectives: expected accuracy and then flash, arena or both, separated by commas, "
                         f"e.g. accuracy,flash,arena; got {text!r}")
    return parts


def parse_budgets(text: str) -> tuple[float, ...]:
    """'8,16,32,64' -> (8.0, 16.0, 32.0, 64.0): size budgets in KB of the flash form, each at least 1."""
    try:
        budgets = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        budgets = ()
    if not budgets or budgets[0] < 1 or any(b != b or b == float("inf") for b in budgets):
        raise InputError(f"--budgets: expected sizes in KB of at least 1, separated by commas, e.g. 8,16,32,64; "
                         f"got {text!r}")
    return budgets
