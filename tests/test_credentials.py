"""The credential paths buyers use, end to end: ECS task role, EKS IRSA, and AWS_REGION.

The emulator is told which credentials to expect and checks every request's SigV4 signature with
botocore's signer, so a gate that signed with anything else is refused (78): the tests prove which
credentials were used, not only that a call went through.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from marketplace_entitlement.emulator import Emulator
from tests.credentials_stand_ins import (
    AUTHORIZATION_TOKEN,
    TASK_ACCESS_KEY_ID,
    TASK_SECRET,
    EcsCredentialsEndpoint,
    gate_environment,
    run_check,
)

ROLE_ARN = "arn:aws:iam::123456789012:role/metering-irsa-role"
REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture
def task_role_emulator() -> Iterator[Emulator]:
    """An emulator in eu-west-1 that accepts only the ECS task role's credentials."""
    with Emulator(credentials={TASK_ACCESS_KEY_ID: TASK_SECRET}, region="eu-west-1") as emulator:
        yield emulator


def test_ecs_task_role_through_the_full_uri(task_role_emulator: Emulator, tmp_path: Path) -> None:
    """AWS_CONTAINER_CREDENTIALS_FULL_URI + authorization token: the task role signs; entitled."""
    with EcsCredentialsEndpoint(authorization=AUTHORIZATION_TOKEN) as endpoint:
        env = gate_environment(
            task_role_emulator,
            tmp_path,
            "eu-west-1",
            AWS_CONTAINER_CREDENTIALS_FULL_URI=endpoint.url,
            AWS_CONTAINER_AUTHORIZATION_TOKEN=AUTHORIZATION_TOKEN,
        )
        result = run_check(env)
    assert result.returncode == 0, result.stderr
    assert endpoint.served >= 1
    (request,) = task_role_emulator.requests("RegisterUsage")
    assert (request.access_key_id, request.region) == (TASK_ACCESS_KEY_ID, "eu-west-1")


def test_ecs_endpoint_serving_other_credentials_is_caught(
    task_role_emulator: Emulator, tmp_path: Path
) -> None:
    """The emulator refuses a signature made with a secret it was not told: the gate exits 78."""
    with EcsCredentialsEndpoint(secret="not-the-task-role-secret") as endpoint:
        env = gate_environment(
            task_role_emulator,
            tmp_path,
            "eu-west-1",
            AWS_CONTAINER_CREDENTIALS_FULL_URI=endpoint.url,
        )
        result = run_check(env)
    assert result.returncode == 78
    assert "InvalidSignatureException" in result.stderr


def test_region_comes_from_aws_region_alone(task_role_emulator: Emulator, tmp_path: Path) -> None:
    """With only AWS_REGION set (botocore ignores it), the call is signed for that region.

    Set to us-west-2, the eu-west-1 emulator answers InvalidRegionException (78).
    """
    with EcsCredentialsEndpoint() as endpoint:
        env = gate_environment(
            task_role_emulator,
            tmp_path,
            "us-west-2",
            AWS_CONTAINER_CREDENTIALS_FULL_URI=endpoint.url,
        )
        result = run_check(env)
    assert result.returncode == 78
    assert "InvalidRegionException" in result.stderr
    (request,) = task_role_emulator.requests("RegisterUsage")
    assert request.region == "us-west-2"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and ip",
)
def test_ecs_task_role_through_the_relative_uri() -> None:
    """AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, served at ECS's own 169.254.170.2.

    botocore always sends a relative URI to 169.254.170.2, so the scenario runs in a new network
    namespace where that address is on the loopback interface (no host network is touched).
    """
    script = (
        "ip link set lo up && ip addr add 169.254.170.2/32 dev lo && "
        f"exec {sys.executable} -m tests.credentials_stand_ins"
    )
    result = subprocess.run(
        ["unshare", "--net", "--fork", "--kill-child", "sh", "-c", script],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 0, result.stderr
    assert outcome["served"] >= 1
    assert (outcome["access_key_id"], outcome["region"]) == (TASK_ACCESS_KEY_ID, "eu-west-1")


# --- EKS IRSA: STS AssumeRoleWithWebIdentity answered by moto's server ---------------------------


class IssuedBySts(Mapping[str, str]):
    """The secrets moto's STS has issued, by access key id, looked up when a request arrives.

    The credentials are random and made only when the gate assumes the role, so the emulator is
    given this live view of moto's STS backend instead of a fixed table.
    """

    def _issued(self) -> dict[str, str]:
        from moto.sts.models import sts_backends  # noqa: PLC0415  (moto only for these tests)

        roles = sts_backends["123456789012"]["aws"].assumed_roles
        return {role.access_key_id: role.secret_access_key for role in roles}

    def __getitem__(self, access_key_id: str) -> str:
        return self._issued()[access_key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._issued())

    def __len__(self) -> int:
        return len(self._issued())


@pytest.fixture
def moto_sts() -> Iterator[str]:
    """Moto's server on a free loopback port; its URL (for ``AWS_ENDPOINT_URL_STS``)."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def irsa_environment(emulator: Emulator, sts: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """What EKS injects for a service account with an IAM role, plus the STS endpoint override."""
    token = tmp_path / "eks.amazonaws.com" / "serviceaccount" / "token"
    token.parent.mkdir(parents=True)
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln")
    return gate_environment(
        emulator,
        tmp_path,
        "eu-west-1",
        AWS_ROLE_ARN=ROLE_ARN,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
        AWS_ROLE_SESSION_NAME="metering-pod",
        AWS_ENDPOINT_URL_STS=sts,
        AWS_STS_REGIONAL_ENDPOINTS="regional",
        **extra,
    )


def test_eks_irsa_web_identity(moto_sts: str, tmp_path: Path) -> None:
    """AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE: the role's credentials sign RegisterUsage.

    moto's STS issues them; the emulator accepts exactly those.
    """
    with Emulator(credentials=IssuedBySts(), region="eu-west-1") as emulator:
        result = run_check(irsa_environment(emulator, moto_sts, tmp_path))
        assert result.returncode == 0, result.stderr
        (request,) = emulator.requests("RegisterUsage")
    assert request.access_key_id in IssuedBySts()
    assert request.region == "eu-west-1"


def test_static_keys_beside_irsa_are_used_and_caught(moto_sts: str, tmp_path: Path) -> None:
    """Long-term keys beside IRSA come first in botocore's chain and are refused (78).

    The emulator expects the IRSA role's credentials, so a wrong credential path cannot pass.
    """
    with Emulator(credentials=IssuedBySts(), region="eu-west-1") as emulator:
        env = irsa_environment(
            emulator,
            moto_sts,
            tmp_path,
            AWS_ACCESS_KEY_ID="AKIANODEROLEORUSER01",
            AWS_SECRET_ACCESS_KEY="long-term-secret",
        )
        result = run_check(env)
    assert result.returncode == 78
    assert "UnrecognizedClientException" in result.stderr
