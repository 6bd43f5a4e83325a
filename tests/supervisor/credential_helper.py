"""Test credential_process helper for botocore: prints temporary credentials as JSON.

``credential_helper.py FAIL_FILE``: exits 0 until FAIL_FILE exists, then exits 3 (still printing
the same JSON, and ``helper-exit-3`` on stderr), so that only the exit status tells botocore that
it failed. The credentials expire in 2 minutes, inside botocore's mandatory refresh window, so
botocore runs the helper again before every request.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone


def main() -> int:
    """Print the credentials; exit 3 once the fail file exists."""
    expires = datetime.now(timezone.utc) + timedelta(minutes=2)
    print(
        json.dumps(
            {
                "Version": 1,
                "AccessKeyId": "AKIDPROCESS",
                "SecretAccessKey": "secret",
                "SessionToken": "token",
                "Expiration": expires.isoformat(),
            }
        )
    )
    if os.path.exists(sys.argv[1]):
        print("helper-exit-3", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
