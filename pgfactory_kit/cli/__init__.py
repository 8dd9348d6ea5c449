"""The ``pgfactory-kit`` command: every subcommand's argument parsing and printing (main.py holds the
database commands and the dispatcher; one module per further subcommand)."""
from .main import main

__all__ = ["main"]
