"""The package version (a module of its own, importable from every layer)."""

__version__ = "0.1.0"
