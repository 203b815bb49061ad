#!/usr/bin/env bash
# Run by the postgres image's entrypoint (docker-entrypoint-initdb.d) on the FIRST start of an
# empty data volume only. To re-run it: `docker compose down -v` (this deletes the data).
#
# Creates one login role and one database per service, owned by that role, with the password
# taken from <SERVICE>_DB_PASSWORD (e.g. MEMBERSHIP_DB_PASSWORD). CONNECT is revoked from PUBLIC
# so a service cannot open another service's database.
#
# UNION_SERVICE_DATABASES lists the services (default: all five, so that adding activities,
# counseling and mediation later does not need a fresh volume).
set -euo pipefail

services=${UNION_SERVICE_DATABASES:-membership claims activities counseling mediation}

for service in $services; do
  password_var="${service^^}_DB_PASSWORD"
  password=${!password_var:-}
  if [[ -z "$password" ]]; then
    echo "01-service-dbs.sh: $password_var is not set; refusing to create role $service without a password" >&2
    exit 1
  fi
  # Values go in as psql variables (:'name' quoting), never spliced into SQL text. \gexec runs the
  # generated statement, which lets CREATE DATABASE (not allowed in a DO block) be conditional.
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
       -v role="$service" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'role')
\gexec
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', :'role')
\gexec
SQL
  echo "01-service-dbs.sh: role and database '$service' ready"
done
