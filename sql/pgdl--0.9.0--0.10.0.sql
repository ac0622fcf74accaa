-- pgdl 0.9.0 -> 0.10.0: a call costs a new backend less.
--  * _server_config() no longer reads pg_settings, which builds every one of
--    the server's settings (0.7 ms a call).  The values a RESET (a new session)
--    would give, and where shared_preload_libraries came from, are now
--    _reset_config()'s: pgdl reads them again only when this session reloads
--    the configuration (pg_conf_load_time()), the only time they change.
\echo Use "ALTER EXTENSION pgdl UPDATE TO '0.10.0'" to load this file. \quit

CREATE OR REPLACE FUNCTION pgdl._server_config(OUT name pg_catalog.text, OUT setting pg_catalog.text)
RETURNS SETOF record
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT c.name, c.setting FROM pg_catalog.pg_config() c
   WHERE c.name OPERATOR(pg_catalog.=) ANY (ARRAY['PKGLIBDIR', 'SHAREDIR', 'VERSION', 'LOCALEDIR']::pg_catalog.text[])
  UNION ALL
  SELECT 'FLOAT8PASSBYVAL'::pg_catalog.text, i.float8_pass_by_value::pg_catalog.text
    FROM pg_catalog.pg_control_init() i
  UNION ALL
  -- Superuser-only settings; a SET in the calling session still shows here.
  SELECT s, pg_catalog.current_setting(s)
    FROM pg_catalog.unnest(ARRAY['dynamic_library_path', 'shared_preload_libraries',
                                 'session_preload_libraries', 'local_preload_libraries']::pg_catalog.text[]) AS s
  UNION ALL
  -- PostgreSQL 18+ (a superuser-only setting; NULL before 18).
  SELECT 'extension_control_path', pg_catalog.current_setting('extension_control_path', true)
   WHERE pg_catalog.current_setting('extension_control_path', true) IS NOT NULL
$$;

-- What changes only when the configuration is reloaded: the RESET values
-- (a new session's, before its role's and database's settings), and where
-- shared_preload_libraries came from (fixed at server start).
CREATE FUNCTION pgdl._reset_config(OUT name pg_catalog.text, OUT setting pg_catalog.text)
RETURNS SETOF record
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT 'reset ' OPERATOR(pg_catalog.||) p.name, p.reset_val FROM pg_catalog.pg_settings p
   WHERE p.name OPERATOR(pg_catalog.=) ANY (ARRAY['session_preload_libraries', 'local_preload_libraries',
                                                   'extension_control_path', 'lc_messages']::pg_catalog.text[])
  UNION ALL
  SELECT 'source shared_preload_libraries', p.source FROM pg_catalog.pg_settings p
   WHERE p.name OPERATOR(pg_catalog.=) 'shared_preload_libraries'
$$;

REVOKE ALL ON FUNCTION pgdl._reset_config() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgdl._reset_config() TO pg_read_server_files;
