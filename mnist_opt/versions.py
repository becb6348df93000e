"""The versions of the packages a result depends on, saved beside every artifact (config.json, manifest, report)."""

from __future__ import annotations

from importlib import metadata

PACKAGES = ("tensorflow", "keras", "tf-keras", "keras-tuner", "tensorflow-model-optimization",
            "tensorboard", "ai-edge-litert", "tflite-micro", "numpy", "typer")


def package_versions() -> dict:
    return {name: metadata.version(name) for name in PACKAGES}
