"""Built-in search spaces: the .toml files beside this file (see tuning.space for the format)."""
