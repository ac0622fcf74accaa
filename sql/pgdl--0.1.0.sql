-- pgdl 0.1.0: explain why a C library will or will not load, without loading it.
\echo Use "CREATE EXTENSION pgdl CASCADE" to load this file. \quit

-- The server's own paths and build settings.  pg_config() and
-- pg_control_init() are superuser-only, so this runs as the extension's owner;
-- it returns nothing secret.  Members of pg_read_server_files can already
-- read any file these paths point to.  The Python package is found under
-- SHAREDIR/pgdl, where `make install` puts it: asking the running server for
-- SHAREDIR (instead of baking a path in at build time) keeps a relocated
-- installation working.
CREATE FUNCTION pgdl._server_config(OUT name text, OUT setting text)
RETURNS SETOF record
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog
AS $$
  SELECT name, setting FROM pg_catalog.pg_config()
   WHERE name IN ('PKGLIBDIR', 'SHAREDIR', 'VERSION')
  UNION ALL
  SELECT 'FLOAT8PASSBYVAL', float8_pass_by_value::text FROM pg_catalog.pg_control_init()
  UNION ALL
  -- Superuser-only setting; a SET in the calling session still shows here.
  SELECT 'dynamic_library_path', pg_catalog.current_setting('dynamic_library_path')
$$;

-- The one door into the Python package: imports it once per session (keeping
-- its entry point in GD) and runs one pgdl function.  It never raises: the
-- result is {"rows": [...]} or {"error": {...}}, and pgdl._rows() turns the
-- latter into a plain SQL error, so users see the server's own wording and
-- no Python traceback.
CREATE FUNCTION pgdl._call(function text, arguments jsonb) RETURNS jsonb
LANGUAGE plpython3u VOLATILE
AS $$
if "pgdl.run" not in GD:
    import sys
    sharedir = plpy.execute("SELECT setting FROM pgdl._server_config() WHERE name = 'SHAREDIR'")[0]["setting"]
    if sharedir + "/pgdl" not in sys.path:
        sys.path.insert(0, sharedir + "/pgdl")
    from pgdl.backend import run
    GD["pgdl.run"] = run
return GD["pgdl.run"](plpy, function, arguments)
$$;

CREATE FUNCTION pgdl._rows(result jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
  e jsonb := result->'error';
BEGIN
  IF e IS NULL THEN
    RETURN result->'rows';
  END IF;
  -- RAISE refuses NULL options, and an empty one would still be shown.
  IF e ? 'detail' AND e ? 'hint' THEN
    RAISE EXCEPTION USING ERRCODE = e->>'sqlstate', MESSAGE = e->>'message',
      DETAIL = e->>'detail', HINT = e->>'hint';
  ELSIF e ? 'detail' THEN
    RAISE EXCEPTION USING ERRCODE = e->>'sqlstate', MESSAGE = e->>'message', DETAIL = e->>'detail';
  ELSIF e ? 'hint' THEN
    RAISE EXCEPTION USING ERRCODE = e->>'sqlstate', MESSAGE = e->>'message', HINT = e->>'hint';
  ELSE
    RAISE EXCEPTION USING ERRCODE = e->>'sqlstate', MESSAGE = e->>'message';
  END IF;
END
$$;

CREATE FUNCTION pgdl.resolve(name text)
RETURNS TABLE (step int, rule text, candidate text, "exists" boolean, regular_file boolean, chosen boolean)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM jsonb_to_recordset(pgdl._rows(pgdl._call('resolve', jsonb_build_array(name))))
    AS t(step int, rule text, candidate text, "exists" boolean, regular_file boolean, chosen boolean)
$$;
COMMENT ON FUNCTION pgdl.resolve(text) IS
  'The files the server tries, in order, for LOAD name in this session, and which one it picks';

CREATE FUNCTION pgdl.check_magic(name text)
RETURNS TABLE (field text, library_value text, server_value text, matches boolean,
               sqlstate text, message text, detail text, hint text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM jsonb_to_recordset(pgdl._rows(pgdl._call('check_magic', jsonb_build_array(name))))
    AS t(field text, library_value text, server_value text, matches boolean,
         sqlstate text, message text, detail text, hint text)
$$;
COMMENT ON FUNCTION pgdl.check_magic(text) IS
  'Read a library''s PG_MODULE_MAGIC block from disk and compare it with this server''s';

CREATE FUNCTION pgdl.predict_load(name text, symbol text DEFAULT NULL)
RETURNS TABLE (will_load boolean, sqlstate text, message text, detail text, hint text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM jsonb_to_recordset(pgdl._rows(pgdl._call('predict_load', jsonb_build_array(name, symbol))))
    AS t(will_load boolean, sqlstate text, message text, detail text, hint text)
$$;
COMMENT ON FUNCTION pgdl.predict_load(text, text) IS
  'What LOAD name (or CREATE FUNCTION ... AS name, symbol LANGUAGE C) would do in this session, with the server''s exact error';

CREATE FUNCTION pgdl.dependencies(name text)
RETURNS TABLE (depth int, needed text, required_by text, path text, found_via text, status text, detail text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM jsonb_to_recordset(pgdl._rows(pgdl._call('dependencies', jsonb_build_array(name))))
    AS t(depth int, needed text, required_by text, path text, found_via text, status text, detail text)
$$;
COMMENT ON FUNCTION pgdl.dependencies(text) IS
  'The DT_NEEDED tree of a library as the dynamic linker would resolve it in this backend';

CREATE FUNCTION pgdl.diagnose(target text)
RETURNS TABLE ("check" text, status text, subject text, detail text, hint text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM jsonb_to_recordset(pgdl._rows(pgdl._call('diagnose', jsonb_build_array(target))))
    AS t("check" text, status text, subject text, detail text, hint text)
$$;
COMMENT ON FUNCTION pgdl.diagnose(text) IS
  'Why an extension, a library or a C function will or will not load, step by step, with the fix';

-- These functions read files anywhere the server's OS user can, like
-- pg_read_binary_file(): nothing for PUBLIC, everything for pg_read_server_files.
GRANT USAGE ON SCHEMA pgdl TO PUBLIC;
REVOKE ALL ON FUNCTION pgdl._server_config(), pgdl._call(text, jsonb), pgdl._rows(jsonb),
  pgdl.resolve(text), pgdl.check_magic(text), pgdl.predict_load(text, text), pgdl.dependencies(text),
  pgdl.diagnose(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgdl._server_config(), pgdl._call(text, jsonb), pgdl._rows(jsonb),
  pgdl.resolve(text), pgdl.check_magic(text), pgdl.predict_load(text, text), pgdl.dependencies(text),
  pgdl.diagnose(text) TO pg_read_server_files;
