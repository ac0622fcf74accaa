-- pgdl 0.1.0 -> 0.2.0: audit() of everything the server may load, and its history.
\echo Use "ALTER EXTENSION pgdl UPDATE TO '0.2.0'" to load this file. \quit

-- Also the preload settings (superuser-only, like dynamic_library_path).
CREATE OR REPLACE FUNCTION pgdl._server_config(OUT name text, OUT setting text)
RETURNS SETOF record
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog
AS $$
  SELECT name, setting FROM pg_catalog.pg_config()
   WHERE name IN ('PKGLIBDIR', 'SHAREDIR', 'VERSION')
  UNION ALL
  SELECT 'FLOAT8PASSBYVAL', float8_pass_by_value::text FROM pg_catalog.pg_control_init()
  UNION ALL
  -- Superuser-only settings; a SET in the calling session still shows here.
  SELECT s, pg_catalog.current_setting(s)
    FROM unnest(ARRAY['dynamic_library_path', 'shared_preload_libraries',
                      'session_preload_libraries', 'local_preload_libraries']) AS s
$$;

CREATE FUNCTION pgdl.audit()
RETURNS TABLE (kind text, subject text, status text, message text, hint text, library text, symbol text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp  -- function signatures always schema-qualified
AS $$
  SELECT * FROM jsonb_to_recordset(pgdl._rows(pgdl._call('audit', '[]')))
    AS t(kind text, subject text, status text, message text, hint text, library text, symbol text)
$$;
COMMENT ON FUNCTION pgdl.audit() IS
  'Every library this server and database may load (C functions, preload settings, extensions, pkglibdir) and stale code, checked without loading';

-- History.  Both tables (and the sequence) are extension configuration, so
-- pg_dump dumps their rows and a restore keeps the history.
CREATE TABLE pgdl.audit_run (
  run_id bigserial PRIMARY KEY,
  started_at timestamptz NOT NULL,
  finished_at timestamptz,
  run_by name NOT NULL DEFAULT session_user,
  errors int,
  warnings int
);
CREATE TABLE pgdl.audit_finding (
  run_id bigint NOT NULL REFERENCES pgdl.audit_run ON DELETE CASCADE,
  kind text NOT NULL,
  subject text NOT NULL,
  status text NOT NULL,
  message text,
  hint text,
  library text,
  symbol text
);
CREATE INDEX audit_finding_run_id ON pgdl.audit_finding (run_id);
SELECT pg_catalog.pg_extension_config_dump('pgdl.audit_run', '');
SELECT pg_catalog.pg_extension_config_dump('pgdl.audit_run_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgdl.audit_finding', '');

-- Runs as the extension's owner so that only it writes history; audit()
-- itself does not depend on who runs it.
CREATE FUNCTION pgdl.record_audit() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  id bigint;
BEGIN
  INSERT INTO pgdl.audit_run (started_at) VALUES (clock_timestamp()) RETURNING run_id INTO id;
  INSERT INTO pgdl.audit_finding (run_id, kind, subject, status, message, hint, library, symbol)
    SELECT id, a.kind, a.subject, a.status, a.message, a.hint, a.library, a.symbol FROM pgdl.audit() a;
  UPDATE pgdl.audit_run r
     SET finished_at = clock_timestamp(),
         errors = (SELECT count(*) FROM pgdl.audit_finding f WHERE f.run_id = id AND f.kind <> 'summary' AND f.status = 'error'),
         warnings = (SELECT count(*) FROM pgdl.audit_finding f WHERE f.run_id = id AND f.kind <> 'summary' AND f.status = 'warning')
   WHERE r.run_id = id;
  RETURN id;
END
$$;
COMMENT ON FUNCTION pgdl.record_audit() IS 'Run pgdl.audit() and store its findings in pgdl.audit_run/audit_finding; returns the run_id';

-- Findings of the last run that the run before it did not have, and the reverse.
CREATE VIEW pgdl.audit_changes AS
WITH runs AS (
  SELECT run_id, row_number() OVER (ORDER BY run_id DESC) AS n FROM pgdl.audit_run
), findings AS (
  SELECT r.n, f.run_id, f.kind, f.subject, f.status, f.message, f.hint, f.library, f.symbol
    FROM pgdl.audit_finding f JOIN runs r USING (run_id)
   WHERE r.n <= 2 AND f.kind <> 'summary'
)
SELECT CASE WHEN a.n = 1 THEN 'appeared' ELSE 'disappeared' END AS change,
       a.run_id, a.kind, a.subject, a.status, a.message, a.hint, a.library, a.symbol
  FROM findings a
 WHERE EXISTS (SELECT FROM runs WHERE n = 2)
   AND NOT EXISTS (SELECT FROM findings b
                    WHERE b.n <> a.n AND (b.kind, b.subject, b.status, b.message)
                          IS NOT DISTINCT FROM (a.kind, a.subject, a.status, a.message)
                      AND (b.library, b.symbol) IS NOT DISTINCT FROM (a.library, a.symbol));
COMMENT ON VIEW pgdl.audit_changes IS 'Findings that appeared or disappeared between the last two recorded audits';

-- Bounded growth: delete runs (and their findings) older than keep; the
-- latest run always stays, so audit_changes keeps a baseline.
CREATE FUNCTION pgdl.prune_audits(keep interval DEFAULT '30 days') RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  deleted bigint;
BEGIN
  IF keep IS NULL OR keep < interval '0' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'keep must be a non-negative interval';
  END IF;
  DELETE FROM pgdl.audit_run
   WHERE started_at < now() - keep AND run_id < (SELECT max(run_id) FROM pgdl.audit_run);
  GET DIAGNOSTICS deleted = ROW_COUNT;
  RETURN deleted;
END
$$;
COMMENT ON FUNCTION pgdl.prune_audits(interval) IS 'Delete recorded audits older than keep (the latest stays); returns the number of runs deleted';

-- Running audits reads files like the other functions: pg_read_server_files.
-- Reading the history: pg_monitor.
REVOKE ALL ON FUNCTION pgdl.audit(), pgdl.record_audit(), pgdl.prune_audits(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgdl.audit(), pgdl.record_audit(), pgdl.prune_audits(interval) TO pg_read_server_files;
REVOKE ALL ON pgdl.audit_run, pgdl.audit_finding, pgdl.audit_changes FROM PUBLIC;
GRANT SELECT ON pgdl.audit_run, pgdl.audit_finding, pgdl.audit_changes TO pg_monitor;
