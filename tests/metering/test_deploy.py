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
