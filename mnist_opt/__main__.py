"""`python -m mnist_opt` is `mnist-opt`."""

from mnist_opt.cli import main

if __name__ == "__main__":  # not when a spawned worker process (export.micro.predict) imports it
    main()
