"""The README's demo: the real entrypoint against the bundled emulator, entitled and refused.

Run by ``scripts/demo`` after it has installed the package into ``.venv``. Exits 0 when every case
behaves as documented (entitled: the application runs; not subscribed: 77; wrong key: 65).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ENTITLED = "prod-demo-entitled"
UNSUBSCRIBED = "prod-demo-unsubscribed"
APPLICATION = [sys.executable, "-c", "print('    application: started, doing its work')"]


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201  (a demo talks to the person running it)


def _start_emulator() -> tuple[subprocess.Popen[str], dict[str, str]]:
    emulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "marketplace_entitlement", "emulator", "--port", "0"),
            *("--product-code", ENTITLED, "--not-entitled", UNSUBSCRIBED),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert emulator.stdout is not None
    ready = json.loads(emulator.stdout.readline())
    return emulator, ready


def _run(title: str, env: dict[str, str], expected: int) -> bool:
    _say(f"\n== {title}")
    _say("   $ marketplace-entitlement run -- python -c \"print('application ...')\"")
    result = subprocess.run(
        [sys.executable, "-m", "marketplace_entitlement", "run", "--", *APPLICATION],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in result.stderr.splitlines():
        _say(f"    log: {line}")
    for line in result.stdout.splitlines():
        _say(line)
    verdict = "as expected" if result.returncode == expected else f"EXPECTED {expected}"
    _say(f"   exit status {result.returncode} ({verdict})")
    return result.returncode == expected


def main() -> int:
    """Start the emulator, run the three cases, stop the emulator; 0 if all behaved."""
    emulator, ready = _start_emulator()
    _say(f"emulator ready: {json.dumps(ready)}")
    try:
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MARKETPLACE_"))},
            "AWS_ENDPOINT_URL_MARKETPLACE_METERING": ready["endpoint"],
            "AWS_ACCESS_KEY_ID": "AKIDDEMO",
            "AWS_SECRET_ACCESS_KEY": "demo-secret",
            "AWS_REGION": "us-east-1",
            "MARKETPLACE_PUBLIC_KEY_FILE": ready["public_key_file"],
            "MARKETPLACE_LOG_FORMAT": "text",
            "MARKETPLACE_REREGISTER_INTERVAL": "0",
        }
        with tempfile.TemporaryDirectory() as scratch:
            wrong_key = Path(scratch) / "someone-elses-key.pem"
            other = rsa.generate_private_key(public_exponent=65537, key_size=3072)
            wrong_key.write_bytes(
                other.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            outcomes = [
                _run(
                    "an entitled buyer: the application starts",
                    {**base, "MARKETPLACE_PRODUCT_CODE": ENTITLED},
                    0,
                ),
                _run(
                    "a buyer without a subscription: refused (77), the application never starts",
                    {**base, "MARKETPLACE_PRODUCT_CODE": UNSUBSCRIBED},
                    77,
                ),
                _run(
                    "a token that does not verify with the configured key: refused (65)",
                    {
                        **base,
                        "MARKETPLACE_PRODUCT_CODE": ENTITLED,
                        "MARKETPLACE_PUBLIC_KEY_FILE": str(wrong_key),
                    },
                    65,
                ),
            ]
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    _say("\ndemo " + ("passed" if all(outcomes) else "FAILED"))
    return 0 if all(outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
