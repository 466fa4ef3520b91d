#!/usr/bin/env bash
# Creates the warehouse database and its owner next to Airflow's metadata database.
#
# The postgres image runs the scripts in /docker-entrypoint-initdb.d once, when its data volume
# is empty; a shell script rather than a .sql file, so that the names and the password come
# from the environment (ECOM_WAREHOUSE_*, set in docker-compose.yaml) and not from the repo.
# To re-run it: `docker compose down --volumes` (this deletes both databases).
set -euo pipefail

: "${ECOM_WAREHOUSE_DB:?}" "${ECOM_WAREHOUSE_USER:?}" "${ECOM_WAREHOUSE_PASSWORD:?}"

# psql's :"name" and :'value' quote the variables as an identifier and a literal.
psql --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set warehouse_db="$ECOM_WAREHOUSE_DB" \
    --set warehouse_user="$ECOM_WAREHOUSE_USER" \
    --set warehouse_password="$ECOM_WAREHOUSE_PASSWORD" <<'SQL'
create role :"warehouse_user" login password :'warehouse_password';
create database :"warehouse_db" owner :"warehouse_user";
SQL
