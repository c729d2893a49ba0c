"""Creates serving's read-only MLflow user (MLFLOW_READER_USERNAME, MLFLOW_READER_PASSWORD) with the
admin's credentials (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD), or resets its password when
it exists, so the environment stays the one source of both. Run by the `mlflow-users` service."""

import os

from mlflow.exceptions import RestException
from mlflow.server.auth.client import AuthServiceClient

client = AuthServiceClient(os.environ["MLFLOW_TRACKING_URI"])
name, password = os.environ["MLFLOW_READER_USERNAME"], os.environ["MLFLOW_READER_PASSWORD"]
try:
    client.create_user(name, password)
    print(f"created the MLflow user {name}")
except RestException as error:
    if error.error_code != "RESOURCE_ALREADY_EXISTS":
        raise
    client.update_user_password(name, password)
    print(f"the MLflow user {name} exists: its password is the environment's")
