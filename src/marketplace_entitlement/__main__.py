"""``python -m marketplace_entitlement`` does what the ``marketplace-entitlement`` script does."""

from __future__ import annotations

from marketplace_entitlement._boot import console_main

if __name__ == "__main__":
    console_main()
