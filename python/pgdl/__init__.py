"""pgdl: explain why a C library will or will not load into PostgreSQL, without loading it.

The package reads like the pipeline (docs/architecture.md):

  postgres/  PostgreSQL's rules: the library name lookup, dfmgr's errors, the
             magic block, fmgr's entry points, extensions as CREATE EXTENSION finds them
  elf/       the ELF reader: what the dynamic loader reads of a file
  glibc/     glibc's rules: ld.so.cache, the search, open_verify, mapping, binding
  engine/    the staged load: one immutable trace of what each stage saw and decided
  views/     what each SQL function shows: renderings of traces, none re-deriving facts
  adapters/  PL/Python: describes the running server and turns views into rows

Below the adapters nothing knows about PostgreSQL's process: the rules and
the engine work from a `pgdl.server.Server` description and read files
(through `pgdl.filestate`, which notes every path an answer depends on).
"""

__version__ = "0.10.0"
