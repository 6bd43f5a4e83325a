"""Stand-ins for the platforms' credential sources, served on loopback, and the gate run against them.

``EcsCredentialsEndpoint`` answers as the ECS container credentials endpoint does (the JSON
botocore's container provider reads). Run as a script (``python -m tests.credentials_stand_ins``)
inside a fresh network namespace where 169.254.170.2 is a loopback address, it serves that
endpoint at ECS's own address and runs ``check`` with ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``,
against an emulator that accepts only the endpoint's credentials; it exits with check's code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from marketplace_entitlement.emulator import Emulator

ECS_ADDRESS = "169.254.170.2"  # where botocore sends AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
RELATIVE_URI = "/v2/credentials/3f4e6c1a-task-role"
TASK_ACCESS_KEY_ID = "ASIAECSTASKROLE00001"
TASK_SECRET = "ecs-task-role-secret"
TASK_TOKEN = "ecs-task-role-session-token"
AUTHORIZATION_TOKEN = "ecs-agent-authorization-token"


class EcsCredentialsEndpoint:
    """Serves ``{AccessKeyId, SecretAccessKey, Token, Expiration}`` at ``path``.

    With ``authorization`` set, requests must carry it in ``Authorization`` (as botocore sends
    ``AWS_CONTAINER_AUTHORIZATION_TOKEN``); others get 401. ``served`` counts good answers.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = RELATIVE_URI,
        access_key_id: str = TASK_ACCESS_KEY_ID,
        secret: str = TASK_SECRET,
        authorization: str | None = None,
    ) -> None:
        self.path = path
        self.served = 0
        body = {
            "AccessKeyId": access_key_id,
            "SecretAccessKey": secret,
            "Token": TASK_TOKEN,
            "Expiration": (datetime.now(timezone.utc) + timedelta(hours=6)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "RoleArn": "arn:aws:iam::123456789012:role/metering-task-role",
        }
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != outer.path:
                    self.send_error(404)
                    return
                if authorization is not None and self.headers.get("Authorization") != authorization:
                    self.send_error(401)
                    return
                outer.served += 1
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The full URI (for ``AWS_CONTAINER_CREDENTIALS_FULL_URI``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def __enter__(self) -> EcsCredentialsEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def gate_environment(emulator: Emulator, home: Path, region: str, **extra: str) -> dict[str, str]:
    """A container's environment with no credentials of its own: the platform provides them."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": region,  # as ECS and EKS set it (no AWS_DEFAULT_REGION)
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING": emulator.endpoint,
        "MARKETPLACE_PRODUCT_CODE": "prod-credentials",
        "MARKETPLACE_PUBLIC_KEY_FILE": str(emulator.public_key_file),
        "MARKETPLACE_REGISTER_TIMEOUT": "5s",
        **extra,
    }


def run_check(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``marketplace-entitlement check`` in ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "marketplace_entitlement", "check"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def relative_uri_scenario() -> int:
    """In a network namespace with 169.254.170.2 on loopback: the ECS relative-URI path."""
    with (
        tempfile.TemporaryDirectory() as home,
        EcsCredentialsEndpoint(host=ECS_ADDRESS, port=80) as endpoint,
        Emulator(credentials={TASK_ACCESS_KEY_ID: TASK_SECRET}, region="eu-west-1") as emulator,
    ):
        env = gate_environment(
            emulator,
            Path(home),
            "eu-west-1",
            AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=RELATIVE_URI,
        )
        result = run_check(env)
        sys.stderr.write(result.stderr)
        (request,) = emulator.requests("RegisterUsage")
        print(
            json.dumps(
                {
                    "code": result.returncode,
                    "served": endpoint.served,
                    "access_key_id": request.access_key_id,
                    "region": request.region,
                }
            )
        )
        return 0


if __name__ == "__main__":
    sys.exit(relative_uri_scenario())
