"""Where pgdl._call() of extension versions up to 0.3.0 finds the adapter (0.4.0
calls pgdl.adapters.backend itself).  Between `make install` of this package
and ALTER EXTENSION pgdl UPDATE, the functions whose rows kept their shape
(predict_load, audit) go on working; the others ask for the update rather
than return rows of the wrong shape."""

from __future__ import annotations

import json

from .adapters import backend

RESHAPED_IN_0_4_0 = ("resolve", "check_magic", "dependencies", "diagnose")


def run(plpy, function, args_json):
    if function in RESHAPED_IN_0_4_0:
        return json.dumps({"error": {
            "sqlstate": "55000",
            "message": f"pgdl.{function}() of this database is older than pgdl's Python package",
            "hint": "Run ALTER EXTENSION pgdl UPDATE in this database."}})
    return backend.run(plpy, function, args_json)
