"""The custom-metering deploy examples keep the store on a task/pod-scoped volume and allow MeterUsage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from marketplace_entitlement import Settings, load_settings
from marketplace_entitlement.entitlement._pin import Pin

ENTRYPOINT = Path(__file__).resolve().parents[2] / "entrypoint"
# What the seller's image pins (`pin --pricing custom --dimensions a,b`), so the manifests set none.
IMAGE_PIN = Pin(
    source="the image's pin file", product_code="prod-x", pricing="custom", dimensions=("a", "b")
)


def _env(pairs: list[dict[str, Any]]) -> dict[str, str]:
    return {pair["name"]: str(pair["value"]) for pair in pairs}


def _pinned_settings(env: dict[str, str]) -> Settings:
    """The manifest's environment under the image's pin: the buyer sets no pricing or dimensions."""
    assert not {"MARKETPLACE_PRICING", "MARKETPLACE_DIMENSIONS"} & set(env)
    return load_settings(env, pin=IMAGE_PIN)


def test_ecs_task_keeps_the_store_on_a_task_scoped_volume() -> None:
    """The ECS example mounts a task-scoped volume at the state directory and restarts in-task.

    The volume has no host path (it lives as long as the task), containers restart inside the task,
    and the stop timeout leaves `run` time to send the unfinished hour. Pricing and dimensions come
    from the image's pin, not from the task definition.
    """
    task = json.loads((ENTRYPOINT / "ecs-task-definition-custom-metering.json").read_text())
    (container,) = task["containerDefinitions"]
    env = _env(container["environment"])
    (volume,) = task["volumes"]
    assert "host" not in volume
    assert "efsVolumeConfiguration" not in volume
    (mount,) = container["mountPoints"]
    assert mount["sourceVolume"] == volume["name"]
    assert mount["containerPath"] == env["MARKETPLACE_METERING_STATE_DIR"]
    assert container["restartPolicy"]["enabled"] is True
    settings = _pinned_settings(env)
    assert settings.pricing == "custom"
    assert container["stopTimeout"] > settings.metering_stop_timeout + 5


def test_kubernetes_deployment_keeps_the_store_on_an_empty_dir() -> None:
    """The EKS example mounts a pod-scoped emptyDir at the state directory and waits long enough.

    Pricing and dimensions come from the image's pin, not from the pod spec.
    """
    deployment = yaml.safe_load(
        (ENTRYPOINT / "kubernetes" / "deployment-custom-metering.yaml").read_text()
    )
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = _env(container["env"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    store_volume = volumes[mounts[env["MARKETPLACE_METERING_STATE_DIR"]]]
    assert "emptyDir" in store_volume
    settings = _pinned_settings(env)
    assert (
        spec["terminationGracePeriodSeconds"] > settings.metering_stop_timeout + settings.term_delay
    )


def test_iam_policy_for_custom_metering_allows_meter_usage_only() -> None:
    """The custom-metering policy allows aws-marketplace:MeterUsage and nothing else."""
    policy = json.loads((ENTRYPOINT / "iam-policy-custom-metering.json").read_text())
    (statement,) = policy["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "aws-marketplace:MeterUsage")


ROOT = ENTRYPOINT.parent


def _state_dir(env_pairs: list[dict[str, Any]]) -> str:
    return _env(env_pairs)["MARKETPLACE_METERING_STATE_DIR"]


def test_the_image_hands_the_state_directory_to_its_runtime_user() -> None:
    """Dockerfile.example creates the examples' state directory and gives it to the runtime user.

    Both deploy examples name the same directory; a RUN step creates it and chowns it to the user
    the image runs as (uid 10001), so `run` as that user can open the store there.
    """
    task = json.loads((ENTRYPOINT / "ecs-task-definition-custom-metering.json").read_text())
    deployment = yaml.safe_load(
        (ENTRYPOINT / "kubernetes" / "deployment-custom-metering.yaml").read_text()
    )
    ecs_dir = _state_dir(task["containerDefinitions"][0]["environment"])
    k8s_dir = _state_dir(deployment["spec"]["template"]["spec"]["containers"][0]["env"])
    assert ecs_dir == k8s_dir
    dockerfile = (ROOT / "Dockerfile.example").read_text().replace("\\\n", " ")
    runs = " ".join(line for line in dockerfile.splitlines() if line.startswith("RUN "))
    assert f"mkdir -p /run/marketplace {ecs_dir}" in runs
    assert f"chown app:app /run/marketplace {ecs_dir}" in runs
    assert "useradd --system --uid 10001" in runs
    assert "USER 10001:10001" in dockerfile


def test_the_pod_makes_the_empty_dir_writable_for_the_image_user() -> None:
    """The custom-metering pod runs as uid/gid 10001 with fsGroup 10001, so its emptyDir is writable."""
    deployment = yaml.safe_load(
        (ENTRYPOINT / "kubernetes" / "deployment-custom-metering.yaml").read_text()
    )
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert context["runAsUser"] == 10001
    assert context["fsGroup"] == context["runAsGroup"] == 10001


def test_the_docs_image_declares_the_state_directory_a_volume_after_chowning_it() -> None:
    """docs/metering.md's Dockerfile creates the store directory for uid 10001, then a VOLUME of it.

    ECS copies a VOLUME's directory (owner included) into a task volume mounted at that path;
    ownership changed after the VOLUME line would be discarded, so the chown comes first.
    """
    text = (ROOT / "docs" / "metering.md").read_text()
    block = text.split("```dockerfile\n", 1)[1].split("```", 1)[0]
    chown = block.index("chown 10001:10001 /var/lib/marketplace-metering")
    volume = block.index('VOLUME ["/var/lib/marketplace-metering"]')
    assert block.index("mkdir -p /var/lib/marketplace-metering") < chown < volume
    assert "ENV MARKETPLACE_METERING_STATE_DIR=/var/lib/marketplace-metering" in block
