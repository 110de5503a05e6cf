"""A local S3-compatible server for the object-storage tests: moto's standalone server.

Started as its own process (``python -m moto.server``) on 127.0.0.1 and a free port, so the
processes the tests start (DDP ranks, ``evaluate --devices``) reach it like any S3 endpoint
through the standard variables :func:`S3Server.env` returns. Nothing listens on another address.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: keys moto accepts as any; fixed so that runs are reproducible
ACCESS_KEY, SECRET_KEY, REGION = "testing-key", "testing-secret", "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    """A running moto server: its endpoint and process."""

    endpoint: str
    process: subprocess.Popen

    def env(self, cache: Path) -> dict[str, str]:
        """The variables a client of this server needs (LitData's chunk cache in ``cache``)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "LITDATA_CACHE_DIR": str(cache / "litdata"),
            "TALKING_FACES_CACHE": str(cache / "talking_faces"),
        }

    def client(self) -> Any:
        """A boto3 S3 client of this server (for what the tests do behind the framework)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` unless it exists."""
        client = self.client()
        if name not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=name)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(log: Path, timeout_s: float = 60.0) -> S3Server:
    """Start moto's server on 127.0.0.1 (a free port) and wait until it answers."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
            return S3Server(endpoint, process)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"moto server did not start: {log.read_text()[-2000:]}"
                ) from None
            time.sleep(0.2)


def upload_prepared(variables: dict[str, str], raw: Path, prep: Path, url: str) -> None:
    """Put the prepared dataset ``prep`` of the GRID-layout corpus ``raw`` (64 px, sidecar
    landmarks, as conftest prepares them) and its experts at ``url``, the way a user does:
    ``talking-faces prepare RAW URL ... --staging PREP``. A second call sends nothing."""
    import pytest

    from talking_faces.cli.main import main

    args = ["prepare", str(raw), url, "--layout", "grid", "--landmarks", "sidecar", "--size", "64"]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in variables.items():
            mp.setenv(key, value)
        assert main([*args, "--staging", str(prep)]) == 0
