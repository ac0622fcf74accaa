-- pgdl 0.6.0 -> 0.7.0: errors a DBA reads without pgdl's insides.
--  * Each public function is PL/pgSQL and raises pgdl's errors itself: the
--    CONTEXT a client sees names only the function called (before, it listed
--    pgdl._rows, _typed_searchable and _typed).  Signatures and results are
--    unchanged, so views made on them keep working.
--  * _server_config also gives extension_control_path (PostgreSQL 18+), where
--    CREATE EXTENSION looks for control files.
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


-- Each public function, made PL/pgSQL from one template: it returns what
-- pgdl._typed() returns and raises again, in its own frame, what that raises
-- (RAISE refuses NULL options, and an empty one would still be shown).
DO $do$
DECLARE
  f record;
BEGIN
  FOR f IN SELECT * FROM (VALUES
    ('resolve(name text)', 'SETOF pgdl.resolution_step',
     $$NULL::pgdl.resolution_step, 'resolve', pg_catalog.jsonb_build_array(pgdl._bytes(name))$$),
    ('check_magic(name text)', 'SETOF pgdl.magic_check',
     $$NULL::pgdl.magic_check, 'check_magic', pg_catalog.jsonb_build_array(pgdl._bytes(name))$$),
    ($$predict_load(name text, symbol text DEFAULT NULL, context text DEFAULT 'this session',
                    role name DEFAULT CURRENT_USER)$$,
     'TABLE (will_load boolean, sqlstate text, message text, detail text, hint text)',
     $$NULL::pgdl.load_prediction, 'predict_load',
       pg_catalog.jsonb_build_array(pgdl._bytes(name), pgdl._bytes(symbol), context, role::pg_catalog.text)$$),
    ($$dependencies(name text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)$$,
     'SETOF pgdl.dependency',
     $$NULL::pgdl.dependency, 'dependencies',
       pg_catalog.jsonb_build_array(pgdl._bytes(name), context, role::pg_catalog.text)$$),
    ($$diagnose(target text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)$$,
     'SETOF pgdl.finding',
     $$NULL::pgdl.finding, 'diagnose',
       pg_catalog.jsonb_build_array(pgdl._bytes(target), pg_catalog.current_setting('search_path'), context,
                                    role::pg_catalog.text)$$),
    ($$audit(context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)$$,
     'TABLE (kind text, subject text, status text, message text, hint text, library text, symbol text)',
     $$NULL::pgdl.audit_row, 'audit', pg_catalog.jsonb_build_array(context, role::pg_catalog.text)$$),
    ('upgrade_check(new_bindir text)', 'SETOF pgdl.upgrade_row',
     $$NULL::pgdl.upgrade_row, 'upgrade_check', pg_catalog.jsonb_build_array(pgdl._bytes(new_bindir))$$)
  ) AS t(signature, result, call) LOOP
    EXECUTE pg_catalog.format($template$
CREATE OR REPLACE FUNCTION pgdl.%s
RETURNS %s LANGUAGE plpgsql VOLATILE
AS $body$
DECLARE
  e_state pg_catalog.text; e_message pg_catalog.text; e_detail pg_catalog.text; e_hint pg_catalog.text;
BEGIN
  RETURN QUERY SELECT * FROM pgdl._typed(%s);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                          e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
  IF e_detail <> '' AND e_hint <> '' THEN
    RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message, DETAIL = e_detail, HINT = e_hint;
  ELSIF e_detail <> '' THEN
    RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message, DETAIL = e_detail;
  ELSIF e_hint <> '' THEN
    RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message, HINT = e_hint;
  ELSE
    RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message;
  END IF;
END
$body$$template$, f.signature, f.result, f.call);
  END LOOP;
END
$do$;
