"""What stands in for an ECS task or EKS pod in the emulator: the caller's SigV4 access key id.

The real service keys the first-call entitlement rule (RegisterUsage) and the once-per-hour rule
(MeterUsage) per task or pod. Each ECS task role session and each EKS IRSA session has its own
temporary credentials, so the access key id a request is signed with is the closest thing the
emulator can see: a container restarted inside the same task keeps the task's credentials (the same
identity); another task gets others.
"""

from __future__ import annotations

from marketplace_entitlement.emulator._sigv4 import SignedIdentity


def task_identity(signed: SignedIdentity) -> str:
    """The task/pod a signed request comes from, as the emulator tells them apart."""
    return signed.access_key_id
