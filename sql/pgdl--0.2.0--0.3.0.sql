-- pgdl 0.2.0 -> 0.3.0: no way in.
--  * Every function runs with search_path = pg_catalog, pg_temp, and the
--    SECURITY DEFINER ones qualify every type, function and operator: with
--    search_path = pg_catalog alone, PostgreSQL searches pg_temp first for
--    types and relations, so a caller's temporary type "text" (a domain with
--    a CHECK) ran with the owner's rights inside _server_config().
--  * Pruning the audit history is for the owner of the history (and
--    superusers) only: members of pg_read_server_files record, they do not
--    delete what others recorded.
\echo Use "ALTER EXTENSION pgdl UPDATE TO '0.3.0'" to load this file. \quit

-- The server's own paths and build settings: pg_config(), pg_control_init()
-- and these settings are for superusers, so this runs as the extension's
-- owner.  It returns nothing secret (members of pg_read_server_files can read
-- any file these paths point to) and evaluates nothing the caller controls.
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
$$;

-- The one door into the Python package (invoker's rights: it reads files as
-- the server's OS user for members of pg_read_server_files, like
-- pg_read_binary_file(), and nothing more), now with a pinned search_path:
-- the queries pgdl runs inside must not resolve to the caller's objects.
ALTER FUNCTION pgdl._call(pg_catalog.text, pg_catalog.jsonb) SET search_path = pg_catalog, pg_temp;

-- No SET clause here: with one, the server would load PL/pgSQL only when
-- _rows() first runs, after _call() described this backend's loaded objects,
-- and every session's second call would find them changed.
CREATE OR REPLACE FUNCTION pgdl._rows(result pg_catalog.jsonb) RETURNS pg_catalog.jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
  e pg_catalog.jsonb := result OPERATOR(pg_catalog.->) 'error';
  sqlstate pg_catalog.text := e OPERATOR(pg_catalog.->>) 'sqlstate';
  message pg_catalog.text := e OPERATOR(pg_catalog.->>) 'message';
  detail pg_catalog.text := e OPERATOR(pg_catalog.->>) 'detail';
  hint pg_catalog.text := e OPERATOR(pg_catalog.->>) 'hint';
BEGIN
  IF result IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgdl._rows: result must not be NULL';
  END IF;
  IF e IS NULL THEN
    RETURN result OPERATOR(pg_catalog.->) 'rows';
  END IF;
  -- RAISE refuses NULL options, and an empty one would still be shown.
  IF detail IS NOT NULL AND hint IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail, HINT = hint;
  ELSIF detail IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail;
  ELSIF hint IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint;
  ELSE
    RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
  END IF;
END
$$;

-- A name as the bytes the server itself would hand the file system, in
-- hexadecimal: in a SQL_ASCII database they need not be UTF-8, which
-- PL/Python requires of text.
CREATE FUNCTION pgdl._bytes(name pg_catalog.text) RETURNS pg_catalog.text
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT pg_catalog.encode(pg_catalog.convert_to(name, pg_catalog.getdatabaseencoding()), 'hex') $$;
REVOKE ALL ON FUNCTION pgdl._bytes(pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgdl._bytes(pg_catalog.text) TO pg_read_server_files;

-- The public functions: invoker's rights, no SET clause (diagnose() resolves
-- a function signature with the caller's search_path), every name qualified.
CREATE OR REPLACE FUNCTION pgdl.resolve(name text)
RETURNS TABLE (step int, rule text, candidate text, "exists" boolean, regular_file boolean, chosen boolean)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM pg_catalog.jsonb_to_recordset(pgdl._rows(pgdl._call('resolve',
           pg_catalog.jsonb_build_array(pgdl._bytes(name)))))
    AS t(step pg_catalog.int4, rule pg_catalog.text, candidate pg_catalog.text, "exists"
         pg_catalog.bool, regular_file pg_catalog.bool, chosen pg_catalog.bool)
$$;

CREATE OR REPLACE FUNCTION pgdl.check_magic(name text)
RETURNS TABLE (field text, library_value text, server_value text, matches boolean,
               sqlstate text, message text, detail text, hint text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM pg_catalog.jsonb_to_recordset(pgdl._rows(pgdl._call('check_magic',
           pg_catalog.jsonb_build_array(pgdl._bytes(name)))))
    AS t(field pg_catalog.text, library_value pg_catalog.text, server_value pg_catalog.text, matches
         pg_catalog.bool, sqlstate pg_catalog.text, message pg_catalog.text, detail pg_catalog.text,
         hint pg_catalog.text)
$$;

CREATE OR REPLACE FUNCTION pgdl.predict_load(name text, symbol text DEFAULT NULL)
RETURNS TABLE (will_load boolean, sqlstate text, message text, detail text, hint text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM pg_catalog.jsonb_to_recordset(pgdl._rows(pgdl._call('predict_load',
           pg_catalog.jsonb_build_array(pgdl._bytes(name),
                                        pgdl._bytes(symbol)))))
    AS t(will_load pg_catalog.bool, sqlstate pg_catalog.text, message pg_catalog.text, detail
         pg_catalog.text, hint pg_catalog.text)
$$;

CREATE OR REPLACE FUNCTION pgdl.dependencies(name text)
RETURNS TABLE (depth int, needed text, required_by text, path text, found_via text, status text, detail text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM pg_catalog.jsonb_to_recordset(pgdl._rows(pgdl._call('dependencies',
           pg_catalog.jsonb_build_array(pgdl._bytes(name)))))
    AS t(depth pg_catalog.int4, needed pg_catalog.text, required_by pg_catalog.text, path
         pg_catalog.text, found_via pg_catalog.text, status pg_catalog.text, detail pg_catalog.text)
$$;

CREATE OR REPLACE FUNCTION pgdl.diagnose(target text)
RETURNS TABLE ("check" text, status text, subject text, detail text, hint text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM pg_catalog.jsonb_to_recordset(pgdl._rows(pgdl._call('diagnose',
           pg_catalog.jsonb_build_array(pgdl._bytes(target),
                                        pg_catalog.current_setting('search_path')))))
    AS t("check" pg_catalog.text, status pg_catalog.text, subject pg_catalog.text, detail
         pg_catalog.text, hint pg_catalog.text)
$$;

CREATE OR REPLACE FUNCTION pgdl.audit()
RETURNS TABLE (kind text, subject text, status text, message text, hint text, library text, symbol text)
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM pg_catalog.jsonb_to_recordset(pgdl._rows(pgdl._call('audit', '[]'::pg_catalog.jsonb)))
    AS t(kind pg_catalog.text, subject pg_catalog.text, status pg_catalog.text, message
         pg_catalog.text, hint pg_catalog.text, library pg_catalog.text, symbol pg_catalog.text)
$$;

-- Runs as the owner of the history, so that only it writes there.  What it
-- stores is audit()'s answer for the server as configured: the settings a
-- session may SET are reset to their defaults for the run (and back when it
-- returns, as every change inside a function with a SET clause is), so that
-- no caller records findings of its own making.
CREATE OR REPLACE FUNCTION pgdl.record_audit() RETURNS pg_catalog.int8
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  id pg_catalog.int8;
  setting pg_catalog.text;
BEGIN
  FOREACH setting IN ARRAY ARRAY['dynamic_library_path', 'session_preload_libraries',
                                 'local_preload_libraries']::pg_catalog.text[] LOOP
    EXECUTE pg_catalog.format('SET LOCAL %I TO DEFAULT', setting);
  END LOOP;
  INSERT INTO pgdl.audit_run (started_at) VALUES (pg_catalog.clock_timestamp()) RETURNING run_id INTO id;
  INSERT INTO pgdl.audit_finding (run_id, kind, subject, status, message, hint, library, symbol)
    SELECT id, a.kind, a.subject, a.status, a.message, a.hint, a.library, a.symbol FROM pgdl.audit() a;
  UPDATE pgdl.audit_run r
     SET finished_at = pg_catalog.clock_timestamp(),
         errors = (SELECT pg_catalog.count(*) FROM pgdl.audit_finding f
                    WHERE f.run_id OPERATOR(pg_catalog.=) id AND f.kind OPERATOR(pg_catalog.<>) 'summary'
                      AND f.status OPERATOR(pg_catalog.=) 'error'),
         warnings = (SELECT pg_catalog.count(*) FROM pgdl.audit_finding f
                      WHERE f.run_id OPERATOR(pg_catalog.=) id AND f.kind OPERATOR(pg_catalog.<>) 'summary'
                        AND f.status OPERATOR(pg_catalog.=) 'warning')
   WHERE r.run_id OPERATOR(pg_catalog.=) id;
  RETURN id;
END
$$;

-- Deleting history is for the owner of the history tables (the extension's
-- owner) and superusers; the owner may delegate it with
-- GRANT EXECUTE ON FUNCTION pgdl.prune_audits(interval) TO some_role.
CREATE OR REPLACE FUNCTION pgdl.prune_audits(keep pg_catalog.interval DEFAULT '30 days') RETURNS pg_catalog.int8
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  deleted pg_catalog.int8;
BEGIN
  IF keep IS NULL OR keep OPERATOR(pg_catalog.<) '0'::pg_catalog.interval THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'keep must be a non-negative interval';
  END IF;
  DELETE FROM pgdl.audit_run
   WHERE started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) keep)
     AND run_id OPERATOR(pg_catalog.<) (SELECT pg_catalog.max(run_id) FROM pgdl.audit_run);
  GET DIAGNOSTICS deleted = ROW_COUNT;
  RETURN deleted;
END
$$;
REVOKE ALL ON FUNCTION pgdl.prune_audits(pg_catalog.interval) FROM pg_read_server_files;
