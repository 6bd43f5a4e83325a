"""``open_store`` opens what a URL names and refuses, by name, what it cannot open."""

from __future__ import annotations

import pytest

from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement.store import open_store


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/usage", "unsupported scheme 'mysql'"),
        ("/var/lib/usage.sqlite3", "unsupported scheme"),
        ("sqlite:///", "names no SQLite file"),
        ("sqlite:///:memory:", "names no SQLite file"),
    ],
)
def test_unsupported_urls_are_configuration_errors(url: str, message: str) -> None:
    """A URL of another scheme, or without a file, is refused with the variable named."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        open_store(url, variable="MARKETPLACE_USAGE_STORE")
    assert caught.value.variable == "MARKETPLACE_USAGE_STORE"
    assert "MARKETPLACE_USAGE_STORE" in str(caught.value)
