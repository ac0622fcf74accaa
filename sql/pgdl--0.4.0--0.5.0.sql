-- pgdl 0.4.0 -> 0.5.0: answers for the process and role the DBA asks about.
--  * predict_load, dependencies, diagnose and audit take `context`
--    ('this session', 'new session', 'server start') and `role` (default
--    current_user).  predict_load's default context is 'this session' (its
--    contract: LOAD here, now); the others default to 'new session'.
--  * The 0.4.0 functions stay, renamed *_0_4, answering as they did: views
--    made on them keep working through the update (a view refers to the
--    function itself, whatever its name).
\echo Use "ALTER EXTENSION pgdl UPDATE TO '0.5.0'" to load this file. \quit

-- What a new session starts from also needs the preload settings' reset
-- values (superuser-only settings, hence here).
CREATE OR REPLACE FUNCTION pgdl._server_config(OUT name pg_catalog.text, OUT setting pg_catalog.text)
RETURNS SETOF record
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT c.name, c.setting FROM pg_catalog.pg_config() c
   WHERE c.name OPERATOR(pg_catalog.=) ANY (ARRAY['PKGLIBDIR', 'SHAREDIR', 'VERSION']::pg_catalog.text[])
  UNION ALL
  SELECT 'FLOAT8PASSBYVAL'::pg_catalog.text, i.float8_pass_by_value::pg_catalog.text
    FROM pg_catalog.pg_control_init() i
  UNION ALL
  -- Superuser-only settings; a SET in the calling session still shows here.
  SELECT s, pg_catalog.current_setting(s)
    FROM pg_catalog.unnest(ARRAY['dynamic_library_path', 'shared_preload_libraries',
                                 'session_preload_libraries', 'local_preload_libraries']::pg_catalog.text[]) AS s
  UNION ALL
  -- ... and the values a RESET (a new session) would give them.
  SELECT 'reset ' OPERATOR(pg_catalog.||) p.name, p.reset_val FROM pg_catalog.pg_settings p
   WHERE p.name OPERATOR(pg_catalog.=) ANY (ARRAY['session_preload_libraries',
                                                   'local_preload_libraries']::pg_catalog.text[])
$$;

ALTER FUNCTION pgdl.predict_load(text, text) RENAME TO predict_load_0_4;
ALTER FUNCTION pgdl.dependencies(text) RENAME TO dependencies_0_4;
ALTER FUNCTION pgdl.diagnose(text) RENAME TO diagnose_0_4;
ALTER FUNCTION pgdl.audit() RENAME TO audit_0_4;
COMMENT ON FUNCTION pgdl.predict_load_0_4(text, text) IS 'pgdl 0.4.0''s predict_load(), kept for views made on it';
COMMENT ON FUNCTION pgdl.dependencies_0_4(text) IS 'pgdl 0.4.0''s dependencies(), kept for views made on it';
COMMENT ON FUNCTION pgdl.diagnose_0_4(text) IS 'pgdl 0.4.0''s diagnose(), kept for views made on it';
COMMENT ON FUNCTION pgdl.audit_0_4() IS 'pgdl 0.4.0''s audit(), kept for views made on it';

CREATE FUNCTION pgdl.predict_load(name text, symbol text DEFAULT NULL, context text DEFAULT 'this session',
                                  role name DEFAULT CURRENT_USER)
RETURNS TABLE (will_load boolean, sqlstate text, message text, detail text, hint text) LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.load_prediction, 'predict_load',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name), pgdl._bytes(symbol), context,
                                                             role::pg_catalog.text)) $$;

CREATE FUNCTION pgdl.dependencies(name text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS SETOF pgdl.dependency LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.dependency, 'dependencies',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name), context, role::pg_catalog.text)) $$;

CREATE FUNCTION pgdl.diagnose(target text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS SETOF pgdl.finding LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.finding, 'diagnose',
                                pg_catalog.jsonb_build_array(pgdl._bytes(target), pg_catalog.current_setting('search_path'),
                                                             context, role::pg_catalog.text)) $$;

CREATE FUNCTION pgdl.audit(context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS TABLE (kind text, subject text, status text, message text, hint text, library text, symbol text)
LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.audit_row, 'audit',
                                pg_catalog.jsonb_build_array(context, role::pg_catalog.text)) $$;

COMMENT ON FUNCTION pgdl.predict_load(text, text, text, name) IS
  'What LOAD name (or CREATE FUNCTION ... AS name, symbol LANGUAGE C) would do in the context asked about: the server''s own error';
COMMENT ON FUNCTION pgdl.dependencies(text, text, name) IS
  'The DT_NEEDED tree of a library as the dynamic linker would resolve it in the context asked about';
COMMENT ON FUNCTION pgdl.diagnose(text, text, name) IS
  'Why an extension, a library or a C function will or will not load in the context asked about, step by step, with the fix';
COMMENT ON FUNCTION pgdl.audit(text, name) IS
  'Every library the server or this database may load, checked for the context asked about';

REVOKE ALL ON FUNCTION pgdl.predict_load(text, text, text, name), pgdl.dependencies(text, text, name),
  pgdl.diagnose(text, text, name), pgdl.audit(text, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgdl.predict_load(text, text, text, name), pgdl.dependencies(text, text, name),
  pgdl.diagnose(text, text, name), pgdl.audit(text, name) TO pg_read_server_files;
