# syntax=docker/dockerfile:1
#
# The Airflow image of E-commerce Insights: the official Airflow image of the version pinned in
# requirements.lock, with exactly that lock installed and the ecom_insights package on top.
#
# Build:  docker compose build      (or: docker build -t ecom-insights-airflow:local .)
#
# The slim image carries Airflow with only its few default providers (the full one adds dozens,
# FAB among them), so what runs is essentially the lock, which brings the celery, postgres, smtp
# and standard providers. Keep these two ARGs equal to `apache-airflow==` and `--python-version`
# in requirements.lock (a unit test checks).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:slim-${AIRFLOW_VERSION}-python${PYTHON_VERSION}

# The official image installs Python packages as the `airflow` user into ~/.local (pip refuses
# root), with AIRFLOW_HOME=/opt/airflow; see the docker-stack docs, "Building the image".
USER airflow

# Naming apache-airflow at the image's own version (AIRFLOW_VERSION is set by the base image)
# makes pip stop with a conflict, instead of silently changing Airflow, if the lock drifts.
COPY --chown=airflow:0 requirements.lock /opt/airflow/requirements.lock
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.lock

# Editable install: the package is imported from /opt/airflow/include, which docker-compose.yaml
# bind-mounts from the work tree, and include/sql/ stays next to the package where ingest.py
# looks for its DDL. --no-deps: every dependency came from the lock above.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN pip install --no-cache-dir --no-deps --editable /opt/airflow

# The image runs on its own too (e.g. on Kubernetes); compose mounts the work tree over these.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 great_expectations/ /opt/airflow/great_expectations/

# Start-up scripts used by docker-compose.yaml (airflow-init, airflow-apiserver). COPY writes as
# root whatever USER says, so they land root-owned and read-only for the Airflow user.
COPY --chmod=0755 docker/airflow-init.sh /usr/local/bin/ecom-airflow-init
COPY --chmod=0755 docker/start-api-server.sh /usr/local/bin/ecom-start-api-server

# ECOM_HOME holds data docs, reports and landed files. A new named volume mounted here copies
# this directory's owner, and umask 0002 keeps it group-writable for an arbitrary UID with
# GID 0, as the official image expects.
RUN umask 0002 && mkdir -p /opt/airflow/ecom/landing /opt/airflow/ecom/data_docs

ENV ECOM_HOME=/opt/airflow/ecom \
    ECOM_LANDING_DIR=/opt/airflow/ecom/landing \
    ECOM_GX_ROOT=/opt/airflow/great_expectations
