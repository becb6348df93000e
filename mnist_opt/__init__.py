"""mnist-opt: tune, prune, quantize and compare MNIST digit classifiers."""

__version__ = "0.1.0"
