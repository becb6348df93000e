"""Built-in search spaces: the .toml files beside this file (see `mnist_opt.tuning.space` for the format)."""
