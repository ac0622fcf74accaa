-- pgdl 0.3.0 -> 0.4.0: one result type per shape, one status vocabulary.
--  * Each function's columns are declared once, in a composite type that is
--    also the Python view's record (tests/test_sql_api.py holds them equal).
--  * resolve: "exists" is file_exists.  dependencies: status is ok, warning
--    or error (found_via says "already loaded", "not found", "skipped").
--    check_magic: the verdict is a column of every row, not a pseudo-row.
--    diagnose: "check" is topic, detail is message.
--  * predict_load and audit keep their columns, so views on them survive;
--    views on the four reshaped functions must be dropped before the update
--    (PostgreSQL refuses to drop a function a view uses) and made again.
\echo Use "ALTER EXTENSION pgdl UPDATE TO '0.4.0'" to load this file. \quit

CREATE TYPE pgdl.resolution_step AS (step pg_catalog.int4, rule pg_catalog.text, candidate pg_catalog.text,
  file_exists pg_catalog.bool, regular_file pg_catalog.bool, chosen pg_catalog.bool);
CREATE TYPE pgdl.load_prediction AS (will_load pg_catalog.bool, sqlstate pg_catalog.text, message pg_catalog.text,
  detail pg_catalog.text, hint pg_catalog.text);
CREATE TYPE pgdl.dependency AS (depth pg_catalog.int4, needed pg_catalog.text, required_by pg_catalog.text,
  path pg_catalog.text, found_via pg_catalog.text, status pg_catalog.text, detail pg_catalog.text);
CREATE TYPE pgdl.magic_check AS (field pg_catalog.text, library_value pg_catalog.text, server_value pg_catalog.text,
  matches pg_catalog.bool, verdict pg_catalog.text, sqlstate pg_catalog.text, message pg_catalog.text,
  detail pg_catalog.text, hint pg_catalog.text);
CREATE TYPE pgdl.finding AS (topic pg_catalog.text, status pg_catalog.text, subject pg_catalog.text,
  message pg_catalog.text, hint pg_catalog.text);
CREATE TYPE pgdl.audit_row AS (kind pg_catalog.text, subject pg_catalog.text, status pg_catalog.text,
  message pg_catalog.text, hint pg_catalog.text, library pg_catalog.text, symbol pg_catalog.text);

-- The door into the Python package, now pgdl.adapters.backend.  pgdl._call
-- (whose import path a database of the cluster still at 0.3.0 uses) goes.
DROP FUNCTION pgdl._call(text, jsonb);
CREATE FUNCTION pgdl._run(function pg_catalog.text, arguments pg_catalog.jsonb) RETURNS pg_catalog.jsonb
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
run = GD.get("pgdl.adapters.run")
if run is None:
    import sys
    package = plpy.execute("SELECT setting FROM pgdl._server_config() WHERE name = 'SHAREDIR'")[0]["setting"] + "/pgdl"
    sys.path[:0] = [] if package in sys.path else [package]
    from pgdl.adapters.backend import run
    GD["pgdl.adapters.run"] = run
return run(plpy, function, arguments)
$$;

-- A function's rows, typed: every public function is this, with its own type.
CREATE FUNCTION pgdl._typed(shape anyelement, function pg_catalog.text, arguments pg_catalog.jsonb)
RETURNS SETOF anyelement
LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pg_catalog.jsonb_populate_recordset(shape, pgdl._rows(pgdl._run(function, arguments))) $$;

DROP FUNCTION pgdl.resolve(text), pgdl.check_magic(text), pgdl.dependencies(text), pgdl.diagnose(text);

CREATE FUNCTION pgdl.resolve(name text) RETURNS SETOF pgdl.resolution_step LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.resolution_step, 'resolve', pg_catalog.jsonb_build_array(pgdl._bytes(name))) $$;

CREATE FUNCTION pgdl.check_magic(name text) RETURNS SETOF pgdl.magic_check LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.magic_check, 'check_magic', pg_catalog.jsonb_build_array(pgdl._bytes(name))) $$;

CREATE FUNCTION pgdl.dependencies(name text) RETURNS SETOF pgdl.dependency LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.dependency, 'dependencies', pg_catalog.jsonb_build_array(pgdl._bytes(name))) $$;

CREATE FUNCTION pgdl.diagnose(target text) RETURNS SETOF pgdl.finding LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.finding, 'diagnose',
                                pg_catalog.jsonb_build_array(pgdl._bytes(target), pg_catalog.current_setting('search_path'))) $$;

-- Same columns as before (views on them survive), read through their types.
CREATE OR REPLACE FUNCTION pgdl.predict_load(name text, symbol text DEFAULT NULL)
RETURNS TABLE (will_load boolean, sqlstate text, message text, detail text, hint text) LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.load_prediction, 'predict_load',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name), pgdl._bytes(symbol))) $$;

CREATE OR REPLACE FUNCTION pgdl.audit()
RETURNS TABLE (kind text, subject text, status text, message text, hint text, library text, symbol text)
LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.audit_row, 'audit', '[]'::pg_catalog.jsonb) $$;

COMMENT ON FUNCTION pgdl.resolve(text) IS
  'The files the server tries, in order, for LOAD name in this session, and which one it picks';
COMMENT ON FUNCTION pgdl.check_magic(text) IS
  'Read a library''s PG_MODULE_MAGIC block from disk and compare it with this server''s';
COMMENT ON FUNCTION pgdl.dependencies(text) IS
  'The DT_NEEDED tree of a library as the dynamic linker would resolve it in this backend';
COMMENT ON FUNCTION pgdl.diagnose(text) IS
  'Why an extension, a library or a C function will or will not load, step by step, with the fix';

REVOKE ALL ON FUNCTION pgdl._run(pg_catalog.text, pg_catalog.jsonb),
  pgdl._typed(anyelement, pg_catalog.text, pg_catalog.jsonb), pgdl.resolve(text), pgdl.check_magic(text),
  pgdl.dependencies(text), pgdl.diagnose(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgdl._run(pg_catalog.text, pg_catalog.jsonb),
  pgdl._typed(anyelement, pg_catalog.text, pg_catalog.jsonb), pgdl.resolve(text), pgdl.check_magic(text),
  pgdl.dependencies(text), pgdl.diagnose(text) TO pg_read_server_files;
