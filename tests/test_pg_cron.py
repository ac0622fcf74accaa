"""The README's pg_cron recipe, for real: pg_cron runs pgdl.record_audit()."""

from __future__ import annotations

import os
import time

import pytest
import testing.postgresql

from conftest import Cluster, pg_config

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(pg_config("--pkglibdir"), "pg_cron.so")),
                                reason="pg_cron is not installed (scripts/install-deps.sh installs it)")


@pytest.fixture(scope="module")
def cron_cluster():
    # pg_cron must be preloaded and told its database; background workers
    # instead of libpq connections spare the test any authentication setup.
    args = ("-h 127.0.0.1 -F -c logging_collector=off -c shared_preload_libraries=pg_cron "
            "-c cron.database_name=test -c cron.use_background_workers=on")
    with testing.postgresql.Postgresql(postgres_args=args) as pg:
        c = Cluster(pg)
        c.query("CREATE EXTENSION pg_cron")
        c.query("CREATE EXTENSION pgdl CASCADE")
        yield c


def test_scheduled_record_audit_runs(cron_cluster):
    c = cron_cluster
    version = c.query("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")[0][0]
    # Interval schedules ('5 seconds') exist since pg_cron 1.5; before that, the next minute.
    seconds = tuple(int(x) for x in version.split("-")[0].split(".")[:2]) >= (1, 5)
    schedule = "5 seconds" if seconds else "* * * * *"
    c.query("SELECT cron.schedule('pgdl-audit', %s, 'SELECT pgdl.record_audit()')", (schedule,))
    c.query("SELECT cron.schedule('pgdl-prune', '0 3 * * *', 'SELECT pgdl.prune_audits(''30 days'')')")
    deadline = time.monotonic() + (30 if seconds else 90)
    status = []
    while time.monotonic() < deadline:
        status = c.query("SELECT d.status, d.return_message FROM cron.job_run_details d "
                         "JOIN cron.job j USING (jobid) WHERE j.jobname = 'pgdl-audit' AND d.status <> 'running'")
        if status:
            break
        time.sleep(1)
    assert status and status[0][0] == "succeeded", status
    runs = c.query("SELECT run_id, finished_at IS NOT NULL, errors, run_by FROM pgdl.audit_run")
    assert len(runs) >= 1 and runs[0][1:3] == (True, 0)
    findings = c.query("SELECT count(*), count(*) FILTER (WHERE library LIKE '%%pg_cron%%') "
                       "FROM pgdl.audit_finding WHERE run_id = %s", (runs[0][0],))[0]
    assert findings[0] > 50 and findings[1] > 0    # pg_cron's own library was audited too
    preload = c.query("SELECT status FROM pgdl.audit_finding WHERE run_id = %s "
                      "AND kind = 'shared_preload_libraries' AND subject = 'pg_cron'", (runs[0][0],))
    assert preload == [("ok",)]
