"""A real S3-compatible server for the storage suite: `moto_server` in its own process."""

import uuid
from pathlib import Path

import httpx
from dagster_aws.s3 import S3Resource
from tests.helpers import VENV_BIN, Service, free_port, wait_for_http

ACCESS_KEY = "storage-suite"
SECRET_KEY = "storage-suite-secret"
REGION = "us-east-1"


class S3Server:
    """`moto_server` on loopback; it can be stopped mid-test and started again on the same port."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.service: Service | None = None
        self.start()

    def start(self) -> None:
        log = self.root / f"moto-{uuid.uuid4().hex[:6]}.log"
        self.service = Service([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], log)
        try:
            wait_for_http(f"{self.endpoint}/moto-api/", timeout=120, process=self.service.process)
        except Exception:
            print(self.service.log_tail())
            self.service.stop()
            raise

    def stop(self) -> None:
        """Stop the process (SIGTERM to its group); moto keeps its state in memory, so it is gone."""
        self.service.stop()

    def resource(self, **overrides) -> S3Resource:
        """A plain-valued S3Resource for this server, as the pipeline builds it from AWS_* variables."""
        settings = {
            "endpoint_url": self.endpoint,
            "region_name": REGION,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            **overrides,
        }
        return S3Resource(**settings)

    def client(self):
        from resources.storage import s3_client

        return s3_client(self.resource())

    def new_bucket(self) -> str:
        name = f"suite-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def enforce_auth(self, enforced: bool) -> None:
        """Switch moto's IAM checks of signatures and keys on (they are off by default)."""
        response = httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=b"0" if enforced else b"inf")
        response.raise_for_status()
