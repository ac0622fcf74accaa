"""Where pgdl._call() of extension versions up to 0.3.0 finds the adapter:
the PL/Python adapter itself is pgdl.adapters.backend."""

from .adapters.backend import run

__all__ = ["run"]
