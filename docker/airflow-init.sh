#!/usr/bin/env bash
# Run once by the airflow-init service, as root, before any other Airflow container starts
# (they wait for it with `condition: service_completed_successfully`).
#
# The image's entrypoint has already waited for the metadata database (`airflow db check`) and
# put the Airflow user's packages on root's PYTHONPATH before handing over to this script.
set -euo pipefail

: "${AIRFLOW_UID:?AIRFLOW_UID must be set (docker-compose.yaml passes it, default 50000)}"
: "${ECOM_HOME:?ECOM_HOME must be set}"
: "${ECOM_LANDING_DIR:?ECOM_LANDING_DIR must be set}"

echo "Airflow $(airflow version)"

# Unlike the image's _AIRFLOW_DB_MIGRATE (which runs `airflow db migrate || true`), a failed
# migration fails this service, so nothing else starts against a half-migrated database.
airflow db migrate

# Named volumes start out owned by root. Every other container runs as AIRFLOW_UID with GID 0
# (the official image's arbitrary-user convention), so the volumes are handed to that user;
# this runs after the migration because Airflow may create log folders as root on the way.
mkdir -p /opt/airflow/logs "${ECOM_HOME}/data_docs" "${ECOM_LANDING_DIR}"
chown -R "${AIRFLOW_UID}:0" /opt/airflow/logs "${ECOM_HOME}"
chmod -R g+rwX /opt/airflow/logs "${ECOM_HOME}"

# The admin login needs no step here: SimpleAuthManager keeps users in configuration, not in
# the database (see docker/start-api-server.sh).
echo "Initialised: metadata database migrated; logs and ECOM_HOME owned by ${AIRFLOW_UID}:0."
