-- pgdl 0.7.0 -> 0.8.0: answers to be read where DBAs read them.
--  * pgdl.explain(): a diagnosis as lines of text, the verdict and the fix first.
--  * pgdl.tree(): the dependency tree, with why each path was chosen and what
--    was rejected on the way.
--  * pgdl.audit_metrics: the latest recorded audit in numbers, for monitoring
--    (docs/postgres_exporter.yml).
-- diagnose() keeps its columns; its rows now start with the verdict and hold
-- no newlines (the Python package decides both).
-- _server_config also gives PostgreSQL's LOCALEDIR and the RESET value of
-- lc_messages: the server's errors are predicted in its own language.
\echo Use "ALTER EXTENSION pgdl UPDATE TO '0.8.0'" to load this file. \quit

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
  -- ... and the values a RESET (a new session) would give them.
  SELECT 'reset ' OPERATOR(pg_catalog.||) p.name, p.reset_val FROM pg_catalog.pg_settings p
   WHERE p.name OPERATOR(pg_catalog.=) ANY (ARRAY['session_preload_libraries', 'local_preload_libraries',
                                                   'extension_control_path', 'lc_messages']::pg_catalog.text[])
  UNION ALL
  -- PostgreSQL 18+ (a superuser-only setting; NULL before 18).
  SELECT 'extension_control_path', pg_catalog.current_setting('extension_control_path', true)
   WHERE pg_catalog.current_setting('extension_control_path', true) IS NOT NULL
$$;

CREATE TYPE pgdl.report_line AS (line pg_catalog.text);

CREATE FUNCTION pgdl.explain(target text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS SETOF text LANGUAGE sql VOLATILE
AS $$ SELECT r.line FROM pgdl._typed(NULL::pgdl.report_line, 'explain',
                                     pg_catalog.jsonb_build_array(pgdl._bytes(target),
                                                                  pg_catalog.current_setting('search_path'),
                                                                  context, role::pg_catalog.text)) r $$;

CREATE FUNCTION pgdl.tree(name text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS SETOF text LANGUAGE sql VOLATILE
AS $$ SELECT r.line FROM pgdl._typed(NULL::pgdl.report_line, 'tree',
                                     pg_catalog.jsonb_build_array(pgdl._bytes(name), context,
                                                                  role::pg_catalog.text)) r $$;

COMMENT ON FUNCTION pgdl.explain(text, text, name) IS
  'diagnose() as a report for the terminal: the verdict and the fix first, then each step, one line a row';
COMMENT ON FUNCTION pgdl.tree(text, text, name) IS
  'The dependency tree of a library as the dynamic linker would resolve it, with why each path was chosen';

REVOKE ALL ON FUNCTION pgdl.explain(text, text, name), pgdl.tree(text, text, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgdl.explain(text, text, name), pgdl.tree(text, text, name) TO pg_read_server_files;

-- One row, always: with no audit recorded yet, runs is 0 and the rest NULL
-- (postgres_exporter shows NaN), so an alert can tell "never run" from "clean".
CREATE VIEW pgdl.audit_metrics AS
SELECT (SELECT pg_catalog.count(*) FROM pgdl.audit_run) AS runs,
       latest.run_id, latest.finished_at,
       pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) latest.finished_at) AS age_seconds,
       latest.errors, latest.warnings,
       (SELECT pg_catalog.count(*) FROM pgdl.audit_finding f
         WHERE f.run_id OPERATOR(pg_catalog.=) latest.run_id AND f.kind OPERATOR(pg_catalog.=) 'stale'
           AND f.status OPERATOR(pg_catalog.<>) 'ok') AS stale
  FROM (SELECT) AS one
  LEFT JOIN LATERAL (SELECT r.run_id, r.finished_at, r.errors, r.warnings FROM pgdl.audit_run r
                      ORDER BY r.run_id DESC LIMIT 1) AS latest ON true;
COMMENT ON VIEW pgdl.audit_metrics IS
  'The latest recorded audit in numbers (errors, warnings, stale code still mapped, its age in seconds), for monitoring';
GRANT SELECT ON pgdl.audit_metrics TO pg_monitor;
