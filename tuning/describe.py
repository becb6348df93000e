"""The search log's line for one trial."""

from __future__ import annotations

from mnist_opt.tuning.architecture import architecture


def describe(record: dict, n: int, total: int | None) -> str:
    """One line a person can follow: the trial's id (as in trials.json), progress, result, model in short, time."""
    v = dict(architecture(record["hyperparameters"]), **record["hyperparameters"])
    filters = ",".join(str(v[f"filters_{b}"]) for b in range(v["conv_blocks"]))
    short = (f"blocks={v['conv_blocks']}x{v['convs_per_block']} filters={filters} k={v['kernel_size']} "
             f"stem={v['stem_stride']} sep={int(v['separable'])} 1x1={int(v['transition'])} "
             f"bn={int(v['batch_norm'])} gap={int(v['global_pooling'])} dense={v['dense_units']} "
             f"drop={v['dropout']:.2f} rot={v['rotation']:g} zoom={v['zoom']:g} shift={v['translation']:g} "
             f"lr={v['learning_rate']:.1e}")
    result = (f"val_acc {record['val_accuracy']:.4f}" if record["status"] == "completed"
              else record["status"].upper())
    if record.get("start"):
        short = "starting point: " + short
    where = f"{n}/{total}" if total else str(n)
    line = (f"trial {record['id']} ({where})  {result:<15} params {record['params']:>9,}  "
            f"{record['seconds']:6.1f}s  ep {record['epochs']}  {short}")
    if record["status"] != "completed":
        line += f"\n    {record['error']}"
    return line
