-- pgdl 0.5.0 -> 0.6.0: answers for a session whose dynamic_library_path the
-- server cannot search.  From PostgreSQL 18 on, the library of every C
-- function -- PL/Python's call handler among them -- is looked up in
-- dynamic_library_path ("$libdir/plpython3" loses its "$libdir/"), so a
-- relative entry before $libdir failed pgdl's own call with the server's error
-- instead of pgdl predicting it.  For a superuser (the only one who can SET it),
-- the call into PL/Python now runs with dynamic_library_path = '$libdir', and
-- the session's own value is handed to pgdl to predict with.

-- The one door into the Python package, now told the caller's dynamic_library_path
-- (NULL: read it from the session, as before).
CREATE FUNCTION pgdl._run(function pg_catalog.text, arguments pg_catalog.jsonb,
                          dynamic_library_path pg_catalog.text) RETURNS pg_catalog.jsonb
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
return run(plpy, function, arguments, dynamic_library_path)
$$;

CREATE OR REPLACE FUNCTION pgdl._run(function pg_catalog.text, arguments pg_catalog.jsonb) RETURNS pg_catalog.jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pgdl._run(function, arguments, NULL::pg_catalog.text) $$;

-- Volatile, so never inlined: the plan of _typed() refers to these two SQL
-- functions only, and PL/Python's handler is looked up only in the one that runs.
CREATE FUNCTION pgdl._typed_plain(shape anyelement, function pg_catalog.text, arguments pg_catalog.jsonb)
RETURNS SETOF anyelement
LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pg_catalog.jsonb_populate_recordset(shape, pgdl._rows(pgdl._run(function, arguments))) $$;

CREATE FUNCTION pgdl._typed_searchable(shape anyelement, function pg_catalog.text, arguments pg_catalog.jsonb,
                                       dynamic_library_path pg_catalog.text)
RETURNS SETOF anyelement
LANGUAGE sql VOLATILE
SET dynamic_library_path = '$libdir'
AS $$ SELECT * FROM pg_catalog.jsonb_populate_recordset(shape,
                      pgdl._rows(pgdl._run(function, arguments, dynamic_library_path))) $$;

-- A function's rows, typed: every public function is this, with its own type.
-- The branch not taken is gated by a one-time filter and never runs.
CREATE OR REPLACE FUNCTION pgdl._typed(shape anyelement, function pg_catalog.text, arguments pg_catalog.jsonb)
RETURNS SETOF anyelement
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM pgdl._typed_searchable(shape, function, arguments,
                                       pg_catalog.current_setting('dynamic_library_path'))
   WHERE pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.=) 'on'
  UNION ALL
  SELECT * FROM pgdl._typed_plain(shape, function, arguments)
   WHERE pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.<>) 'on'
$$;

REVOKE ALL ON FUNCTION pgdl._run(pg_catalog.text, pg_catalog.jsonb, pg_catalog.text),
  pgdl._typed_plain(anyelement, pg_catalog.text, pg_catalog.jsonb),
  pgdl._typed_searchable(anyelement, pg_catalog.text, pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
-- _typed_searchable is in every caller's plan, so its EXECUTE is checked for all;
-- only a superuser's call runs it (its SET needs one).
GRANT EXECUTE ON FUNCTION pgdl._run(pg_catalog.text, pg_catalog.jsonb, pg_catalog.text),
  pgdl._typed_plain(anyelement, pg_catalog.text, pg_catalog.jsonb),
  pgdl._typed_searchable(anyelement, pg_catalog.text, pg_catalog.jsonb, pg_catalog.text) TO pg_read_server_files;

-- Before a major upgrade: what the installation in new_bindir will say of every
-- library this cluster uses (pg_upgrade --check's LOADs, a dump and restore's
-- CREATE EXTENSIONs, the preload settings), from that installation's files.
CREATE TYPE pgdl.upgrade_row AS (kind pg_catalog.text, subject pg_catalog.text, status pg_catalog.text,
  message pg_catalog.text, hint pg_catalog.text, library pg_catalog.text, pg_upgrade pg_catalog.text,
  databases pg_catalog.text);

CREATE FUNCTION pgdl.upgrade_check(new_bindir text)
RETURNS SETOF pgdl.upgrade_row LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.upgrade_row, 'upgrade_check',
                                pg_catalog.jsonb_build_array(pgdl._bytes(new_bindir))) $$;

COMMENT ON FUNCTION pgdl.upgrade_check(text) IS
  'What the PostgreSQL installation in new_bindir will say of every library this database and server use: pg_upgrade --check''s LOADs, a restore''s CREATE EXTENSIONs, the preloads';

REVOKE ALL ON FUNCTION pgdl.upgrade_check(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgdl.upgrade_check(text) TO pg_read_server_files;
