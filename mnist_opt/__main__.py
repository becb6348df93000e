"""`python -m mnist_opt` is `mnist-opt`."""

from mnist_opt.cli import main

if __name__ == "__main__":  # not when something imports the module
    main()
