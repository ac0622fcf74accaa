-- pgdl 0.8.0 -> 0.9.0: a NULL target or library, or a blank target, is refused
-- by PostgreSQL itself in the public function's own frame, with a domain cast
-- in its body: the error's CONTEXT names the function the DBA called
-- ("SQL function "diagnose" statement 1"), not pgdl's internal ones (_typed,
-- _rows), as it did when the Python package refused them.  No function's
-- arguments, columns or rows change.
\echo Use "ALTER EXTENSION pgdl UPDATE TO '0.9.0'" to load this file. \quit

-- What diagnose() and explain() are asked about.  Blank is the same blank as
-- the shell tool's (pgdl.adapters.validate.BLANK): ASCII white space only
-- (\013 is \v, which E'' strings do not know).
CREATE DOMAIN pgdl.target AS pg_catalog.text
  NOT NULL
  CONSTRAINT "target must name an extension, a library or a C function"
    CHECK (pg_catalog.btrim(VALUE, E' \t\n\r\f\013') OPERATOR(pg_catalog.<>) '');

-- A library as LOAD would be given it: '' is a real question (LOAD '' fails).
CREATE DOMAIN pgdl.library AS pg_catalog.text NOT NULL;

-- The bindir of another installation (upgrade_check).
CREATE DOMAIN pgdl.bindir AS pg_catalog.text NOT NULL;

CREATE OR REPLACE FUNCTION pgdl.resolve(name text)
RETURNS SETOF pgdl.resolution_step LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.resolution_step, 'resolve',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name::pgdl.library))) $$;

CREATE OR REPLACE FUNCTION pgdl.check_magic(name text)
RETURNS SETOF pgdl.magic_check LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.magic_check, 'check_magic',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name::pgdl.library))) $$;

CREATE OR REPLACE FUNCTION pgdl.predict_load(name text, symbol text DEFAULT NULL, context text DEFAULT 'this session',
                                             role name DEFAULT CURRENT_USER)
RETURNS TABLE (will_load boolean, sqlstate text, message text, detail text, hint text) LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.load_prediction, 'predict_load',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name::pgdl.library), pgdl._bytes(symbol),
                                                             context, role::pg_catalog.text)) $$;

CREATE OR REPLACE FUNCTION pgdl.predict_load_0_4(name text, symbol text DEFAULT NULL)
RETURNS TABLE (will_load boolean, sqlstate text, message text, detail text, hint text) LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.load_prediction, 'predict_load',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name::pgdl.library), pgdl._bytes(symbol))) $$;

CREATE OR REPLACE FUNCTION pgdl.dependencies(name text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS SETOF pgdl.dependency LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.dependency, 'dependencies',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name::pgdl.library), context,
                                                             role::pg_catalog.text)) $$;

CREATE OR REPLACE FUNCTION pgdl.dependencies_0_4(name text)
RETURNS SETOF pgdl.dependency LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.dependency, 'dependencies',
                                pg_catalog.jsonb_build_array(pgdl._bytes(name::pgdl.library))) $$;

CREATE OR REPLACE FUNCTION pgdl.diagnose(target text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS SETOF pgdl.finding LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.finding, 'diagnose',
                                pg_catalog.jsonb_build_array(pgdl._bytes(target::pgdl.target),
                                                             pg_catalog.current_setting('search_path'),
                                                             context, role::pg_catalog.text)) $$;

CREATE OR REPLACE FUNCTION pgdl.diagnose_0_4(target text)
RETURNS SETOF pgdl.finding LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.finding, 'diagnose',
                                pg_catalog.jsonb_build_array(pgdl._bytes(target::pgdl.target),
                                                             pg_catalog.current_setting('search_path'))) $$;

CREATE OR REPLACE FUNCTION pgdl.explain(target text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS SETOF text LANGUAGE sql VOLATILE
AS $$ SELECT r.line FROM pgdl._typed(NULL::pgdl.report_line, 'explain',
                                     pg_catalog.jsonb_build_array(pgdl._bytes(target::pgdl.target),
                                                                  pg_catalog.current_setting('search_path'),
                                                                  context, role::pg_catalog.text)) r $$;

CREATE OR REPLACE FUNCTION pgdl.tree(name text, context text DEFAULT 'new session', role name DEFAULT CURRENT_USER)
RETURNS SETOF text LANGUAGE sql VOLATILE
AS $$ SELECT r.line FROM pgdl._typed(NULL::pgdl.report_line, 'tree',
                                     pg_catalog.jsonb_build_array(pgdl._bytes(name::pgdl.library), context,
                                                                  role::pg_catalog.text)) r $$;

CREATE OR REPLACE FUNCTION pgdl.upgrade_check(new_bindir text)
RETURNS SETOF pgdl.upgrade_row LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgdl._typed(NULL::pgdl.upgrade_row, 'upgrade_check',
                                pg_catalog.jsonb_build_array(pgdl._bytes(new_bindir::pgdl.bindir))) $$;

-- USAGE only lets a role make objects that depend on a type; a cast in a
-- query needs none, so the callers need no grant.
REVOKE USAGE ON DOMAIN pgdl.target, pgdl.library, pgdl.bindir FROM PUBLIC;
