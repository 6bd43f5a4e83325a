"""The deploy examples (Dockerfile.example, entrypoint/) agree with the package, without Docker.

Nothing here can build an image or reach AWS, so every file is parsed and cross-checked: the
Dockerfile line by line, the ECS task definition and IAM policies as JSON, and the Kubernetes
manifests with PyYAML. test_deploy_linters.py runs the linters and validators of each format.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from marketplace_entitlement import _env
from marketplace_entitlement.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT_DIR = ROOT / "entrypoint"
DOCKERFILE = ROOT / "Dockerfile.example"
ECS_TASK_DEFINITION = ENTRYPOINT_DIR / "ecs-task-definition.json"
KUBERNETES = ENTRYPOINT_DIR / "kubernetes"
IAM_POLICY = ENTRYPOINT_DIR / "iam-policy.json"
TRUST_ECS = ENTRYPOINT_DIR / "iam-trust-policy-ecs.json"
TRUST_IRSA = ENTRYPOINT_DIR / "iam-trust-policy-irsa.json"
DEPLOY_DOCS = [
    ROOT / "docs" / "image.md",
    ROOT / "docs" / "deploy-ecs.md",
    ROOT / "docs" / "deploy-eks.md",
]
# The shape of a seller's project the Dockerfile is copied into (examples/multi-worker is one).
SELLER_PROJECT = ROOT / "examples" / "multi-worker"
# What the seller adds next to the Dockerfile: the wheel, the key, and this repository's script.
SELLERS_OWN_FILES = {"wheels/", "public-key.pem", "entrypoint.sh"}
ENTRYPOINT_SCRIPT = ENTRYPOINT_DIR / "entrypoint.sh"
INSTALLED_ENTRYPOINT = "/usr/local/bin/marketplace-entrypoint"
# The registry AWS Marketplace serves container products from (the seller's repository in it).
MARKETPLACE_REGISTRY = "709825985650.dkr.ecr.us-east-1.amazonaws.com/"

PROBE = ["marketplace-entitlement", "probe"]
# Pinned in the image (`marketplace-entitlement pin`), so neither the image's ENV nor what the buyer
# deploys names them.
PINNED_VARIABLES = {
    _env.PRODUCT_CODE,
    _env.PUBLIC_KEY,
    _env.PUBLIC_KEY_FILE,
    _env.PUBLIC_KEY_VERSION,
    _env.PRICING,  # a custom-metered image pins its pricing and dimensions too
    _env.DIMENSIONS,
}
ECS_TASK_DEFINITIONS = sorted(ENTRYPOINT_DIR.glob("ecs-task-definition*.json"))
DEPLOYMENTS = sorted(KUBERNETES.glob("deployment*.yaml"))
# CONTRACT.md and the entrypoint's additions: the defaults the deploy examples must cover.
DEFAULT_STOP_GRACE_PERIOD = 10.0
DEFAULT_TERM_DELAY = 0.0
DEFAULT_REGISTER_TIMEOUT = 30 * 60.0
# FACTS.md's trap: the jwt.io demo key that AWS's Java sample shows. Its PEM prefix, its modulus as
# it is aligned in that PEM, and its modulus as a JWK (base64url) would each give it away.
JWT_IO_DEMO_KEY_MARKERS = (
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDdlatRjRjogo3WojgGHFHYLugd",
    "dlatRjRjogo3WojgGHFHYLugd",
    "3ZWrUY0Y6IKN1qI4BhxR2C7oH",
)
PACKAGE_VARIABLES = {
    value
    for name, value in vars(_env).items()
    if name.isupper() and isinstance(value, str) and value.startswith(_env.PREFIX)
}
AWS_CREDENTIAL_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
REGION_VARIABLES = {_env.AWS_REGION, _env.AWS_DEFAULT_REGION}
ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")


# --- helpers -------------------------------------------------------------------------------------


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    """Read a duration as CONTRACT.md spells it: bare seconds or Go-style units (``1h30m``)."""
    text = duration.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    assert parts, f"not a duration: {duration!r}"
    assert "".join(number + unit for number, unit in parts) == text, f"not a duration: {duration!r}"
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    r"""Split a Dockerfile into instructions the way the builder does (``\`` joins lines).

    Comment lines, including those inside a continued instruction, and empty lines are dropped.
    """
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions of the last build stage: the ones that shape the image that ships."""
    starts = [
        index for index, instruction in enumerate(instructions) if instruction.keyword == "FROM"
    ]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    """The one instruction with this keyword; the test fails if there is none or several."""
    found = [instruction for instruction in instructions if instruction.keyword == keyword]
    assert len(found) == 1, f"expected exactly one {keyword}, found {len(found)}"
    return found[0]


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    """The environment the ENV instructions leave in the image (``KEY=value`` and ``KEY value``)."""
    environment: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword != "ENV":
            continue
        words = shlex.split(instruction.arguments)
        if "=" not in words[0]:
            environment[words[0]] = instruction.arguments.partition(" ")[2].strip()
            continue
        for word in words:
            key, separator, value = word.partition("=")
            assert separator, f"ENV mixes forms: {instruction.arguments!r}"
            environment[key] = value
    return environment


def copies(instructions: list[Instruction]) -> list[tuple[list[str], str]]:
    """Each COPY from the build context as (sources, destination); ``--flag`` words are skipped."""
    result: list[tuple[list[str], str]] = []
    for instruction in instructions:
        if instruction.keyword != "COPY":
            continue
        words = [word for word in shlex.split(instruction.arguments) if not word.startswith("--")]
        assert len(words) >= 2, f"COPY needs a source and a destination: {instruction.arguments!r}"
        result.append((words[:-1], words[-1]))
    return result


def copied_to(source: str, destination: str) -> str:
    """Where COPY puts one source file: into a directory when the destination ends with ``/``."""
    if destination.endswith("/"):
        return str(PurePosixPath(destination) / PurePosixPath(source).name)
    return destination


def load_json(path: Path) -> Any:
    """Parse one JSON file of the examples."""
    return json.loads(path.read_text(encoding="utf-8"))


def load_manifest(name: str) -> dict[str, Any]:
    """Parse one Kubernetes manifest, which must hold exactly one document."""
    text = (KUBERNETES / name).read_text(encoding="utf-8")
    documents = [document for document in yaml.safe_load_all(text) if document is not None]
    assert len(documents) == 1, f"{name} should hold one document, found {len(documents)}"
    document = documents[0]
    assert isinstance(document, dict)
    return document


def ecs_container() -> dict[str, Any]:
    """The one (essential) container of the example task definition."""
    containers = load_json(ECS_TASK_DEFINITION)["containerDefinitions"]
    assert len(containers) == 1
    container = containers[0]
    assert isinstance(container, dict)
    return container


def ecs_environment() -> dict[str, str]:
    """The example ECS container's environment as a mapping."""
    return {item["name"]: item["value"] for item in ecs_container()["environment"]}


def pod_spec() -> dict[str, Any]:
    """The pod template spec of the example Deployment."""
    spec = load_manifest("deployment.yaml")["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def pod_container() -> dict[str, Any]:
    """The one container of the example Deployment."""
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    container = containers[0]
    assert isinstance(container, dict)
    return container


def pod_environment() -> dict[str, str]:
    """The example Deployment container's literal environment as a mapping."""
    return {item["name"]: item["value"] for item in pod_container()["env"]}


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """An IAM policy's statements, checked to carry the current policy language version."""
    assert policy["Version"] == "2012-10-17"
    found = policy["Statement"]
    assert isinstance(found, list)
    assert found
    return found


def as_list(value: str | list[str]) -> list[str]:
    """IAM allows one string or a list wherever several values may stand."""
    return [value] if isinstance(value, str) else value


def allowed_actions(policy: dict[str, Any]) -> set[str]:
    """Every action an IAM policy allows."""
    return {
        action
        for statement in statements(policy)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    }


# --- Dockerfile.example --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> list[Instruction]:
    """The final stage of Dockerfile.example."""
    return final_stage(dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")))


def test_dockerfile_parser_joins_continuations_and_drops_comments() -> None:
    r"""The parser the other Dockerfile tests rely on joins ``\`` lines and skips comments."""
    text = '# c\nFROM x\nRUN a \\\n  # inside\n  && b\nENV A=1 \\\n    B="two words"\n'
    instructions = dockerfile_instructions(text)
    assert instructions == [
        Instruction("FROM", "x"),
        Instruction("RUN", "a && b"),
        Instruction("ENV", 'A=1 B="two words"'),
    ]
    assert dockerfile_env(instructions) == {"A": "1", "B": "two words"}


def test_dockerfile_builds_from_python_slim(image: list[Instruction]) -> None:
    """The shipped stage starts from the official slim Python 3.12 image."""
    assert image[0].arguments.split()[0] == "python:3.12-slim"


def test_dockerfile_has_one_exec_form_entrypoint_naming_the_installed_script(
    image: list[Instruction],
) -> None:
    """Exactly one ENTRYPOINT, a JSON array naming entrypoint/entrypoint.sh where the image puts it.

    The script is COPYed there from the build context with mode 0755, before the ENTRYPOINT.
    """
    entrypoint = json.loads(only(image, "ENTRYPOINT").arguments)
    assert entrypoint == [INSTALLED_ENTRYPOINT]
    script_copies = [
        instruction
        for instruction in image
        if instruction.keyword == "COPY" and INSTALLED_ENTRYPOINT in instruction.arguments
    ]
    assert [step.arguments.split() for step in script_copies] == [
        ["--chmod=0755", "entrypoint.sh", INSTALLED_ENTRYPOINT]
    ]
    assert image.index(script_copies[0]) < image.index(only(image, "ENTRYPOINT"))


def test_dockerfile_copies_the_shape_of_a_sellers_project(image: list[Instruction]) -> None:
    """Every COPY source is in a seller's project or is one of the files the seller adds.

    examples/multi-worker is such a project; the seller adds the wheel directory, the key, and the
    entrypoint script, the one file copied from this repository (entrypoint/entrypoint.sh).
    """
    sources = [source for sources, _ in copies(image) for source in sources]
    assert set(sources) >= SELLERS_OWN_FILES
    assert "src/" in sources
    missing = [source for source in sources if not (SELLER_PROJECT / source).exists()]
    assert sorted(missing) == sorted(SELLERS_OWN_FILES)
    assert ENTRYPOINT_SCRIPT.is_file()


def test_dockerfile_installs_the_package_from_the_wheel_and_the_app_as_the_sellers(
    image: list[Instruction],
) -> None:
    """The image installs the marketplace-entitlement wheel by its file name, then the project itself."""
    runs = [i.arguments for i in image if i.keyword == "RUN" and "pip install" in i.arguments]
    assert len(runs) == 2
    assert "/tmp/wheels/marketplace_entitlement-*.whl" in runs[0]
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", runs[1])


def test_dockerfile_cmd_names_the_example_application(image: list[Instruction]) -> None:
    """The example CMD runs the multi-worker example's gunicorn config and app, which exist."""
    command = json.loads(only(image, "CMD").arguments)
    assert command[0] == "gunicorn"
    config = command[command.index("--config") + 1].removeprefix("python:")
    for module in (config, command[-1].partition(":")[0]):
        assert (SELLER_PROJECT / "src" / (module.replace(".", "/") + ".py")).is_file(), module


def test_dockerfile_cmd_is_exec_form(image: list[Instruction]) -> None:
    """The example CMD is a JSON array, so the entrypoint receives it as separate arguments."""
    command = json.loads(only(image, "CMD").arguments)
    assert isinstance(command, list)
    assert command
    assert all(isinstance(word, str) for word in command)


def test_dockerfile_healthcheck_runs_the_probe_after_a_start_period(
    image: list[Instruction],
) -> None:
    """HEALTHCHECK runs ``marketplace-entitlement probe`` in exec form, after a long start period.

    The start period covers the default register timeout, during which the status file does not
    exist yet.
    """
    options_text, separator, command_text = only(image, "HEALTHCHECK").arguments.partition("CMD ")
    assert separator
    assert json.loads(command_text) == PROBE
    options = dict(option.removeprefix("--").split("=", 1) for option in options_text.split())
    assert seconds(options["start-period"]) >= DEFAULT_REGISTER_TIMEOUT
    assert 0 < seconds(options["timeout"]) < seconds(options["interval"])
    assert int(options["retries"]) >= 1


def test_dockerfile_switches_to_a_numeric_non_root_user_before_entrypoint(
    image: list[Instruction],
) -> None:
    """The last USER before ENTRYPOINT is a numeric id other than root's (0).

    Numeric, so Kubernetes' runAsNonRoot can verify it; and it matches the Deployment's runAsUser.
    """
    keywords = [instruction.keyword for instruction in image]
    entrypoint_at = keywords.index("ENTRYPOINT")
    users = [instruction for instruction in image[:entrypoint_at] if instruction.keyword == "USER"]
    assert users
    user, _, group = users[-1].arguments.partition(":")
    assert user.isdigit()
    assert int(user) != 0
    assert "USER" not in keywords[entrypoint_at:]
    assert pod_spec()["securityContext"]["runAsUser"] == int(user)
    if group:
        assert pod_spec()["securityContext"]["runAsGroup"] == int(group)


def test_dockerfile_pins_the_product_code_and_a_temporary_copy_of_the_key(
    image: list[Instruction],
) -> None:
    """The key is COPYed to a temporary place, pinned with a product code placeholder, then removed.

    ``marketplace-entitlement pin`` runs in the same RUN step that deletes the copy, after the
    package is installed and before the ENTRYPOINT, and writes the default pin file.
    """
    (key_copy,) = [
        copied_to(source, destination)
        for sources, destination in copies(image)
        for source in sources
        if source == "public-key.pem"
    ]
    assert key_copy.startswith("/tmp/")
    (pin_step,) = [
        i for i in image if i.keyword == "RUN" and "marketplace-entitlement pin" in i.arguments
    ]
    words = shlex.split(pin_step.arguments)
    assert words[words.index("--product-code") + 1] == "<PRODUCT_CODE>"
    assert words[words.index("--public-key-file") + 1] == key_copy
    assert "--output" not in words  # the default place: pin.json in the installed package
    assert f"rm {key_copy}" in pin_step.arguments
    installs = [i for i in image if i.keyword == "RUN" and "pip install" in i.arguments]
    assert image.index(installs[0]) < image.index(pin_step)
    assert image.index(pin_step) < image.index(only(image, "ENTRYPOINT"))


def test_dockerfile_sets_only_a_status_file_and_nothing_pinned(image: list[Instruction]) -> None:
    """The image's ENV names the status file for the probe and nothing the pin file holds.

    No product code or key variable (the pin holds them), no MARKETPLACE_ variable the package does
    not read, and no region or credentials.
    """
    environment = dockerfile_env(image)
    assert environment[_env.STATUS_FILE].startswith("/")
    assert not (set(environment) & PINNED_VARIABLES)
    marketplace = {name for name in environment if name.startswith(_env.PREFIX)}
    assert marketplace <= PACKAGE_VARIABLES
    assert not (set(environment) & (REGION_VARIABLES | AWS_CREDENTIAL_VARIABLES))


def test_dockerfile_status_directory_belongs_to_the_runtime_user(image: list[Instruction]) -> None:
    """The status file's directory is created and handed to the non-root user in a RUN step."""
    status_dir = str(PurePosixPath(dockerfile_env(image)[_env.STATUS_FILE]).parent)
    runs = " ".join(i.arguments for i in image if i.keyword == "RUN")
    assert f"mkdir -p {status_dir}" in runs
    assert re.search(rf"chown \S+ {re.escape(status_dir)}\b", runs)


def test_dockerfile_stop_signal_is_sigterm(image: list[Instruction]) -> None:
    """STOPSIGNAL is SIGTERM, the signal the supervisor forwards after the term delay."""
    assert only(image, "STOPSIGNAL").arguments == "SIGTERM"


# --- entrypoint/ecs-task-definition.json ---------------------------------------------------------


def test_ecs_task_definition_is_fargate_compatible_with_both_roles() -> None:
    """The task definition runs on Fargate and names both a task role and an execution role.

    Fargate needs awsvpc and task-level cpu and memory; the task role is the metering identity, the
    execution role pulls the image and writes logs.
    """
    task = load_json(ECS_TASK_DEFINITION)
    assert "FARGATE" in task["requiresCompatibilities"]
    assert task["networkMode"] == "awsvpc"
    assert task["cpu"]
    assert task["memory"]
    for role in ("taskRoleArn", "executionRoleArn"):
        assert re.fullmatch(r"arn:aws:iam::[^:]+:role/\S+", task[role]), role
    assert task["taskRoleArn"] != task["executionRoleArn"]


def test_ecs_container_is_essential_and_health_checked_by_the_probe() -> None:
    """The container is essential; its healthCheck runs the probe within ECS's allowed ranges."""
    container = ecs_container()
    assert container["essential"] is True
    health = container["healthCheck"]
    assert health["command"] == ["CMD", *PROBE]
    assert 5 <= health["interval"] <= 300
    assert 2 <= health["timeout"] <= 60
    assert health["timeout"] < health["interval"]
    assert 1 <= health["retries"] <= 10
    assert 0 <= health["startPeriod"] <= 300


def test_ecs_stop_timeout_outlasts_term_delay_and_grace_period() -> None:
    """``stopTimeout`` exceeds MARKETPLACE_TERM_DELAY + MARKETPLACE_STOP_GRACE_PERIOD.

    So ECS's SIGKILL never cuts the supervisor's shutdown short; it stays within Fargate's 120 s.
    """
    environment = ecs_environment()
    grace = seconds(environment.get(_env.STOP_GRACE_PERIOD, str(DEFAULT_STOP_GRACE_PERIOD)))
    delay = seconds(environment.get(_env.TERM_DELAY, str(DEFAULT_TERM_DELAY)))
    assert grace + delay < ecs_container()["stopTimeout"] <= 120


@pytest.mark.parametrize("path", ECS_TASK_DEFINITIONS, ids=lambda path: path.name)
def test_ecs_environment_names_nothing_pinned_and_no_region_or_credentials(path: Path) -> None:
    """Each ECS container (hourly, custom metering) sets no product code, key, pricing or credentials.

    The product code and key (and a custom-metered product's pricing and dimensions) are pinned in
    the image; the status file is the image's. It sets only
    variables the package knows; ECS itself sets AWS_REGION and serves the task role's credentials.
    """
    (container,) = load_json(path)["containerDefinitions"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert environment[_env.STATUS_FILE].startswith("/")
    assert not (set(environment) & PINNED_VARIABLES)
    assert {name for name in environment if name.startswith(_env.PREFIX)} <= PACKAGE_VARIABLES
    assert not (set(environment) & (REGION_VARIABLES | AWS_CREDENTIAL_VARIABLES))
    assert "secrets" not in container
    paths = [mount["containerPath"] for mount in container.get("mountPoints", [])]
    assert not [path for path in paths if path.startswith("/etc/marketplace")]
    assert not ACCESS_KEY_ID.search(path.read_text(encoding="utf-8"))


def test_ecs_status_file_agrees_with_the_image() -> None:
    """The status file the task definition names is the one whose directory the image provides."""
    image_environment = dockerfile_env(
        final_stage(dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")))
    )
    assert ecs_environment()[_env.STATUS_FILE] == image_environment[_env.STATUS_FILE]


def test_ecs_logs_go_to_cloudwatch() -> None:
    """The container logs through the awslogs driver with a group, region and stream prefix."""
    logging = ecs_container()["logConfiguration"]
    assert logging["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(logging["options"])


# --- entrypoint/kubernetes/ ----------------------------------------------------------------------


def test_kubernetes_manifests_parse_to_the_expected_kinds() -> None:
    """Each manifest parses with ``yaml.safe_load_all`` into one object of the expected kind."""
    kinds = {
        name: load_manifest(name)["kind"]
        for name in ("serviceaccount.yaml", "deployment.yaml", "deployment-custom-metering.yaml")
    }
    assert kinds == {
        "serviceaccount.yaml": "ServiceAccount",
        "deployment.yaml": "Deployment",
        "deployment-custom-metering.yaml": "Deployment",
    }
    assert sorted(path.name for path in KUBERNETES.glob("*.yaml")) == sorted(kinds)


def test_service_account_carries_the_irsa_role_annotation() -> None:
    """The ServiceAccount names its IAM role with ``eks.amazonaws.com/role-arn``."""
    annotations = load_manifest("serviceaccount.yaml")["metadata"]["annotations"]
    assert re.fullmatch(r"arn:aws:iam::[^:]+:role/\S+", annotations["eks.amazonaws.com/role-arn"])


def test_deployment_runs_as_that_service_account() -> None:
    """The pods use the IRSA ServiceAccount, in its namespace, and keep the token IRSA needs."""
    account = load_manifest("serviceaccount.yaml")["metadata"]
    deployment = load_manifest("deployment.yaml")
    assert pod_spec()["serviceAccountName"] == account["name"]
    assert deployment["metadata"]["namespace"] == account["namespace"]
    assert pod_spec().get("automountServiceAccountToken", True) is True


def test_deployment_grace_period_outlasts_term_delay_and_grace_period() -> None:
    """``terminationGracePeriodSeconds`` exceeds the term delay plus the stop grace period.

    So the kubelet's SIGKILL comes only after the supervisor's own.
    """
    environment = pod_environment()
    grace = seconds(environment.get(_env.STOP_GRACE_PERIOD, str(DEFAULT_STOP_GRACE_PERIOD)))
    delay = seconds(environment.get(_env.TERM_DELAY, str(DEFAULT_TERM_DELAY)))
    assert pod_spec()["terminationGracePeriodSeconds"] > grace + delay


def test_deployment_probes_call_the_probe_command() -> None:
    """Startup, liveness and readiness probes all exec ``marketplace-entitlement probe``.

    The startup probe waits at least the register timeout before liveness can restart the pod.
    """
    container = pod_container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == PROBE, probe
    startup = container["startupProbe"]
    timeout = seconds(pod_environment().get(_env.REGISTER_TIMEOUT, "30m"))
    assert startup["periodSeconds"] * startup["failureThreshold"] >= timeout


def test_deployment_is_non_root_with_a_read_only_root_and_a_writable_status_dir() -> None:
    """The pod runs as non-root on a read-only root, with an emptyDir for the status file.

    The status file's directory is the emptyDir mount, so the supervisor can still write it.
    """
    spec = pod_spec()
    container = pod_container()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    status_dir = str(PurePosixPath(pod_environment()[_env.STATUS_FILE]).parent)
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert "emptyDir" in volumes[mounts[status_dir]]


@pytest.mark.parametrize("path", DEPLOYMENTS, ids=lambda path: path.name)
def test_deployment_names_nothing_pinned_no_region_or_credentials_and_keeps_the_entrypoint(
    path: Path,
) -> None:
    """Each Deployment (hourly, custom metering) carries no key, product code, pricing or credentials.

    The product code and key (and a custom-metered product's pricing and dimensions) are pinned in
    the image, so no variable names them and no volume
    holds a key (only the status, metering state and /tmp volumes remain). It sets only variables
    the package knows, and keeps the image's ENTRYPOINT; EKS injects AWS_REGION and the IRSA
    settings.
    """
    (document,) = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    spec = document["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    environment = {item["name"]: item["value"] for item in container["env"]}
    assert not (set(environment) & PINNED_VARIABLES)
    assert {name for name in environment if name.startswith(_env.PREFIX)} <= PACKAGE_VARIABLES
    assert not (set(environment) & (REGION_VARIABLES | AWS_CREDENTIAL_VARIABLES))
    assert "command" not in container
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert all(set(volume) == {"name", "emptyDir"} for volume in volumes.values())
    assert "/etc/marketplace" not in {mount["mountPath"] for mount in container["volumeMounts"]}
    assert not ACCESS_KEY_ID.search(path.read_text(encoding="utf-8"))


# --- entrypoint/entrypoint.sh -------------------------------------------------------------------

SCRIPT_COMMAND = 'exec python3 -I -m marketplace_entitlement run -- "$@"'


def test_entrypoint_script_is_an_executable_posix_shell_script() -> None:
    """entrypoint/entrypoint.sh starts with ``#!/bin/sh``, is executable, and is so in git too."""
    text = ENTRYPOINT_SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh\n")
    assert os.access(ENTRYPOINT_SCRIPT, os.X_OK)
    if shutil.which("git") and (ROOT / ".git").exists():
        staged = subprocess.run(
            ["git", "ls-files", "--stage", "--", "entrypoint/entrypoint.sh"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            cwd=ROOT,
        )
        assert staged.stdout.split()[0] == "100755"


def test_entrypoint_script_execs_the_gate_in_isolated_mode() -> None:
    """The script's one command execs ``python3 -I -m marketplace_entitlement run -- "$@"``.

    Everything else in it is comments; ``sh -n`` finds no syntax error.
    """
    lines = ENTRYPOINT_SCRIPT.read_text(encoding="utf-8").splitlines()
    commands = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert commands == [SCRIPT_COMMAND]
    check = subprocess.run(
        ["sh", "-n", str(ENTRYPOINT_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def python3_on_path(directory: Path) -> str:
    """A PATH whose first entry holds ``python3``: this project's venv interpreter, and no script.

    ``python3`` is a two-line wrapper that execs the venv's interpreter by its own path (a symlink
    elsewhere would not do: Python finds its venv from pyvenv.cfg next to the path it was started
    by). The rest of PATH is the system's, which has no ``marketplace-entitlement``.
    """
    directory.mkdir()
    wrapper = directory / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    return os.pathsep.join([str(directory), "/usr/bin", "/bin"])


def run_script(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``sh entrypoint/entrypoint.sh COMMAND...`` with ``env``."""
    return subprocess.run(
        ["sh", str(ENTRYPOINT_SCRIPT), *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_entrypoint_script_runs_the_command_only_when_entitled(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Against the emulator, ``sh entrypoint.sh true`` exits 0 when entitled and 77 when not."""
    env = {**aws_env, "PATH": python3_on_path(tmp_path / "bin")}
    entitled = run_script(env, "true")
    assert entitled.returncode == 0, entitled.stderr
    # Another product, which this buyer has no subscription to (the emulator, as AWS, refuses only a
    # task's first registration for a product, so the entitled product cannot be reused here).
    service.set_product("prod-unsubscribed", "not_entitled")
    refused = run_script({**env, _env.PRODUCT_CODE: "prod-unsubscribed"}, "true")
    assert refused.returncode == 77, refused.stderr


def test_entrypoint_script_ignores_pythonpath(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """A PYTHONPATH holding a fake ``marketplace_entitlement`` has no effect on the script (``-I``).

    The fake package's ``__main__`` would exit 0 for a buyer who is not entitled; the same
    interpreter without ``-I`` does import it (so the fake is real), while the script still exits 77.
    """
    fake = tmp_path / "fake" / "marketplace_entitlement"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("", encoding="utf-8")
    (fake / "__main__.py").write_text("print('fake gate: entitled')\n", encoding="utf-8")
    service.set_product(aws_env[_env.PRODUCT_CODE], "not_entitled")
    env = {
        **aws_env,
        "PATH": python3_on_path(tmp_path / "bin"),
        "PYTHONPATH": str(tmp_path / "fake"),
    }
    without_isolation = subprocess.run(
        ["python3", "-m", "marketplace_entitlement", "run", "--", "true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert (without_isolation.returncode, without_isolation.stdout) == (0, "fake gate: entitled\n")
    result = run_script(env, "true")
    assert result.returncode == 77, result.stdout + result.stderr
    assert "fake gate" not in result.stdout


# --- IAM -----------------------------------------------------------------------------------------


def test_iam_policy_grants_only_register_usage() -> None:
    """The permissions policy allows ``aws-marketplace:RegisterUsage`` and nothing else."""
    assert allowed_actions(load_json(IAM_POLICY)) == {"aws-marketplace:RegisterUsage"}


def test_docs_offer_meter_usage_as_a_separate_statement() -> None:
    """The deploy docs show the statement to add for custom metering, as valid JSON.

    That statement allows ``aws-marketplace:MeterUsage`` alone.
    """
    text = "".join(path.read_text(encoding="utf-8") for path in DEPLOY_DOCS)
    blocks = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    metering = [json.loads(block) for block in blocks if "MeterUsage" in block]
    assert len(metering) == 1
    statement = metering[0]
    assert statement["Effect"] == "Allow"
    assert as_list(statement["Action"]) == ["aws-marketplace:MeterUsage"]


def test_ecs_trust_policy_lets_ecs_tasks_assume_the_role() -> None:
    """The ECS trust policy lets ``ecs-tasks.amazonaws.com`` assume the role, in one account.

    The action is ``sts:AssumeRole``, limited by ``aws:SourceArn`` and ``aws:SourceAccount``.
    """
    (statement,) = statements(load_json(TRUST_ECS))
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert as_list(statement["Action"]) == ["sts:AssumeRole"]
    source_arn = statement["Condition"]["ArnLike"]["aws:SourceArn"]
    assert source_arn.startswith("arn:aws:ecs:")
    account = statement["Condition"]["StringEquals"]["aws:SourceAccount"]
    assert source_arn.split(":")[4] == account


def test_irsa_trust_policy_is_scoped_to_the_service_account() -> None:
    """The IRSA trust policy admits only the example ServiceAccount, and only for STS.

    The cluster's OIDC provider may call ``sts:AssumeRoleWithWebIdentity`` when ``:sub`` names the
    ServiceAccount of serviceaccount.yaml and ``:aud`` is ``sts.amazonaws.com``.
    """
    (statement,) = statements(load_json(TRUST_IRSA))
    assert statement["Effect"] == "Allow"
    assert as_list(statement["Action"]) == ["sts:AssumeRoleWithWebIdentity"]
    provider_arn = statement["Principal"]["Federated"]
    provider = provider_arn.partition(":oidc-provider/")[2]
    assert provider.startswith("oidc.eks.")
    conditions = statement["Condition"]["StringEquals"]
    account = load_manifest("serviceaccount.yaml")["metadata"]
    expected_subject = f"system:serviceaccount:{account['namespace']}:{account['name']}"
    assert conditions == {
        f"{provider}:sub": expected_subject,
        f"{provider}:aud": "sts.amazonaws.com",
    }


# --- all files -----------------------------------------------------------------------------------


def deploy_files() -> list[Path]:
    """Every file that goes to sellers as an example (this test module excluded)."""
    files = [path for path in sorted(ENTRYPOINT_DIR.rglob("*")) if path.is_file()]
    return [*files, DOCKERFILE, *DEPLOY_DOCS]


def test_no_example_contains_the_jwt_io_demo_key() -> None:
    """No example, manifest or doc carries the jwt.io demo key that AWS's Java sample shows."""
    files = deploy_files()
    assert ENTRYPOINT_SCRIPT in files
    offenders = [
        (str(path.relative_to(ROOT)), marker)
        for path in files
        for marker in JWT_IO_DEMO_KEY_MARKERS
        if marker in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_deploy_doc_refers_only_to_files_that_exist() -> None:
    """Every repository path the deploy docs name in backticks exists."""
    text = "".join(path.read_text(encoding="utf-8") for path in DEPLOY_DOCS)
    named = set(re.findall(r"`((?:entrypoint/|Dockerfile\.example)[^`\s]*)`", text))
    assert "entrypoint/ecs-task-definition.json" in named
    assert "entrypoint/kubernetes/deployment.yaml" in named
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []


def test_images_are_named_in_the_marketplace_registry() -> None:
    """The buyer deploys the image from AWS Marketplace's registry, so every placeholder names it."""
    images = [
        container["image"]
        for path in sorted(ENTRYPOINT_DIR.glob("ecs-task-definition*.json"))
        for container in json.loads(path.read_text(encoding="utf-8"))["containerDefinitions"]
    ] + [
        container["image"]
        for path in sorted(KUBERNETES.glob("deployment*.yaml"))
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if document and document.get("kind") == "Deployment"
        for container in document["spec"]["template"]["spec"]["containers"]
    ]
    assert len(images) >= 4
    for image in images:
        assert image.startswith(MARKETPLACE_REGISTRY), image
        assert re.fullmatch(r"[^/]+/<SELLER>/<REPOSITORY>:<TAG>", image), image
