"""pgdl: explain why a C library will or will not load into PostgreSQL, without loading it.

The core modules are pure: they take a `pgdl.server.Server` describing the
server and read files.  `pgdl.backend` builds that description inside a live
backend and is the only module that talks to PL/Python.
"""

__version__ = "0.3.0"
