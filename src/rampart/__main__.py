"""``python -m rampart`` (and ``torchrun -m rampart``) run the CLI."""

from rampart.cli import main

main()
