#!/usr/bin/env bash
# A real PostgreSQL for the scale-out tests: Debian's package, the default cluster, one superuser
# role `automl` (password `automl`) on 127.0.0.1:5432. Prints the URL the tests read from
# AUTOML_TEST_POSTGRES. Safe to run again.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >&2
fi
pg_ctlcluster "$version" main start >&2 2>/dev/null || true
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
pg_isready -q -h 127.0.0.1 || { echo "error: PostgreSQL $version did not start on 127.0.0.1:5432" >&2; exit 1; }
su postgres -c "psql -qtA -c \"SELECT 1 FROM pg_roles WHERE rolname='automl'\"" | grep -q 1 ||
  su postgres -c "psql -q -c \"CREATE ROLE automl LOGIN SUPERUSER PASSWORD 'automl'\"" >&2
echo "postgresql://automl:automl@127.0.0.1:5432/postgres"
