"""What the database's catalog says: its C functions, an extension's, the
function a signature names.  Names come back as the bytes the server uses."""

from __future__ import annotations

from ..errors import UserError
from ..server import CFunction
from .session import session


class Plan:
    """A query prepared once per session (parsed and planned once, not every call)."""

    def __init__(self, query: str, types: list[str]):
        self.query, self.types, self.plan = query, types, None

    def get(self, plpy):
        if self.plan is None:
            self.plan = plpy.prepare(self.query, self.types)
        return self.plan


# The signature is resolved with the caller's search_path; the rest is qualified.
_FUNCTION = Plan("""
    SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text AS sig, p.probin, p.prosrc, l.lanname
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
     WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure($1)""", ["pg_catalog.text"])
_NAMED = Plan("""
    SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text AS sig, p.probin, p.prosrc, l.lanname
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
     WHERE p.proname OPERATOR(pg_catalog.=) $2
       AND CASE WHEN $1 IS NULL THEN pg_catalog.pg_function_is_visible(p.oid)
                ELSE n.nspname OPERATOR(pg_catalog.=) $1 END
     ORDER BY l.lanname OPERATOR(pg_catalog.<>) 'c', 1""", ["pg_catalog.text", "pg_catalog.text"])
_SET_PATH = Plan("SELECT pg_catalog.set_config('search_path', $1, true)", ["pg_catalog.text"])
# The extension's version, and its C functions (none: one row of NULLs; no row: not created).
_EXTENSION = Plan("""
    SELECT e.extversion, p.oid::pg_catalog.regprocedure::pg_catalog.text AS sig, p.probin, p.prosrc
      FROM pg_catalog.pg_extension e
      LEFT JOIN (pg_catalog.pg_depend d
                 JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.objid
                 JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
                                              AND l.lanname OPERATOR(pg_catalog.=) 'c')
             ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
            AND d.refobjid OPERATOR(pg_catalog.=) e.oid
            AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
     WHERE e.extname OPERATOR(pg_catalog.=) $1
     ORDER BY 2""", ["pg_catalog.text"])
_C_FUNCTIONS = Plan("""
    SELECT p.oid::regprocedure::text AS sig, p.probin, p.prosrc
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
     WHERE l.lanname = 'c'
     ORDER BY 1""", [])


# As pg_upgrade's get_loadable_libraries() collects them (ClanguageId 13, FirstNormalObjectId 16384).
_PROBINS = Plan("""
    SELECT DISTINCT probin FROM pg_catalog.pg_proc
     WHERE prolang OPERATOR(pg_catalog.=) 13 AND probin IS NOT NULL AND oid OPERATOR(pg_catalog.>=) 16384""", [])
_EXTENSIONS = Plan("SELECT extname::pg_catalog.text AS extname, extversion FROM pg_catalog.pg_extension", [])


class Catalog:
    """pgdl.views.diagnose.Catalog, answered by this database."""

    def __init__(self, plpy, search_path: str | None = None):
        self.plpy = plpy
        self.search_path = search_path      # the caller's (pgdl._run pins its own)

    def function(self, signature: str) -> tuple[CFunction, str] | None:
        plpy = self.plpy
        try:
            rows = self._as_caller(lambda: plpy.execute(_FUNCTION.get(plpy), [signature]))
        except plpy.SPIError as exc:
            fs = session(plpy).fs
            raise UserError(f"invalid function signature: {fs(signature)}", hint=fs(str(exc)))
        return (_c_function(plpy, rows[0]), rows[0]["lanname"]) if rows else None

    def extension(self, extension: str) -> tuple[str | None, list[CFunction]]:
        plpy = self.plpy
        rows = plpy.execute(_EXTENSION.get(plpy), [extension])
        if not rows:
            return None, []
        return session(plpy).fs(rows[0]["extversion"]), [_c_function(plpy, r) for r in rows if r["sig"] is not None]

    def extension_versions(self) -> dict[str, str]:
        """Every extension created in this database, with its version."""
        fs = session(self.plpy).fs
        return {fs(r["extname"]): fs(r["extversion"]) for r in self.plpy.execute(_EXTENSIONS.get(self.plpy))}

    def functions_named(self, name: str) -> list[tuple[CFunction, str]]:
        plpy = self.plpy
        schema, _, proname = name.rpartition(".") if "." in name and '"' not in name else (None, "", name)
        rows = self._as_caller(lambda: plpy.execute(_NAMED.get(plpy), [schema or None, proname]))
        return [(_c_function(plpy, r), r["lanname"]) for r in rows]

    def c_functions(self) -> list[CFunction]:
        """Every C function of the database."""
        return [_c_function(self.plpy, r) for r in self.plpy.execute(_C_FUNCTIONS.get(self.plpy))]

    def loadable_libraries(self) -> list[str]:
        """The probin strings pg_upgrade --check LOADs, as they are."""
        fs = session(self.plpy).fs
        return [fs(r["probin"]) for r in self.plpy.execute(_PROBINS.get(self.plpy))]

    def extensions(self) -> list[str]:
        return list(self.extension_versions())

    def _as_caller(self, query):
        """query() with the caller's search_path; the change ends with this call
        (as every change inside a function with a SET clause does) and is undone here at once."""
        if self.search_path is None:
            return query()
        plpy = self.plpy
        plpy.execute(_SET_PATH.get(plpy), [self.search_path])
        try:
            return query()
        finally:
            plpy.execute(_SET_PATH.get(plpy), ["pg_catalog, pg_temp"])


def _c_function(plpy, row) -> CFunction:
    fs = session(plpy).fs
    return CFunction(fs(row["sig"]), fs(row["probin"]), fs(row["prosrc"]))
