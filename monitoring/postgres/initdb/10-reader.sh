#!/bin/bash
# Run once by the postgres image on a fresh volume (/docker-entrypoint-initdb.d): the login
# role Grafana's datasource uses, `grafana_reader`, with the password GRAFANA_DB_PASSWORD, a
# member of `tickcast_reader` (SELECT only; `tickcast migrate` grants it on every table). Run
# again, it only resets the password. For a volume made before this script existed, run it by
# hand: `docker compose exec postgres bash /docker-entrypoint-initdb.d/10-reader.sh`.
set -euo pipefail
: "${GRAFANA_DB_PASSWORD:?GRAFANA_DB_PASSWORD is not set}"
psql -v ON_ERROR_STOP=1 -v pw="$GRAFANA_DB_PASSWORD" --username "$POSTGRES_USER" \
  --dbname "$POSTGRES_DB" <<'SQL'
select not exists (select from pg_roles where rolname = 'tickcast_reader') as make_reader \gset
\if :make_reader
  create role tickcast_reader nologin;
\endif
select not exists (select from pg_roles where rolname = 'grafana_reader') as make_login \gset
\if :make_login
  create role grafana_reader login password :'pw' in role tickcast_reader;
\else
  alter role grafana_reader login password :'pw';
  grant tickcast_reader to grafana_reader;
\endif
SQL
