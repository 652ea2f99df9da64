"""The gossamer command line."""

from gossamer.cli.app import app, main

__all__ = ["app", "main"]
