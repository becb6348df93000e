"""`python -m mnist_opt` is `mnist-opt`."""

from mnist_opt.cli import main

main()
