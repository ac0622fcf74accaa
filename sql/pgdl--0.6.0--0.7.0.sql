-- pgdl 0.6.0 -> 0.7.0: extensions as PostgreSQL 18 finds them.
--  * _server_config also gives extension_control_path (PostgreSQL 18+), where
--    CREATE EXTENSION looks for control files, and its RESET value.
-- The public functions stay SQL: on PostgreSQL 18 calling a PL/pgSQL function
-- looks up plpgsql's handler in dynamic_library_path before any SET clause of
-- the function applies, so a superuser session whose dynamic_library_path the
-- server cannot search could not call pgdl at all (0.6.0's case).
\echo Use "ALTER EXTENSION pgdl UPDATE TO '0.7.0'" to load this file. \quit

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
   WHERE p.name OPERATOR(pg_catalog.=) ANY (ARRAY['session_preload_libraries', 'local_preload_libraries',
                                                   'extension_control_path']::pg_catalog.text[])
  UNION ALL
  -- PostgreSQL 18+ (a superuser-only setting; NULL before 18).
  SELECT 'extension_control_path', pg_catalog.current_setting('extension_control_path', true)
   WHERE pg_catalog.current_setting('extension_control_path', true) IS NOT NULL
$$;
