"""python3 -m pgdl: the shell tool (pgdl.adapters.cli)."""

from .adapters.cli import main

raise SystemExit(main())
