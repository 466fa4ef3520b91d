#!/usr/bin/env bash
# Starts the Airflow API server (UI, REST API and the Execution API the workers call) with the
# admin login taken from the environment.
#
# Airflow 3's default auth manager, SimpleAuthManager, is the one in use: the image installs
# requirements.lock, which has no FAB provider. It reads the users from
# [core] simple_auth_manager_users and their passwords from a JSON file; without that file it
# would invent a random password and print it to the log of every new container. The file is
# written from AIRFLOW_ADMIN_USERNAME and AIRFLOW_ADMIN_PASSWORD on each start, so that changing
# the password in .env and restarting this service is enough.
set -euo pipefail

python - <<'PY'
import json
import os
from pathlib import Path

passwords_file = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
passwords_file.parent.mkdir(parents=True, exist_ok=True)
passwords = {os.environ["AIRFLOW_ADMIN_USERNAME"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}
passwords_file.write_text(json.dumps(passwords) + "\n")
passwords_file.chmod(0o600)
PY

exec airflow api-server
