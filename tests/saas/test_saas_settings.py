"""Settings for the SaaS commands: no product code or key needed; the store URL is validated."""

from __future__ import annotations

import pytest

from marketplace_entitlement import ConfigurationError, load_settings


def test_saas_loading_needs_no_product_code_nor_key() -> None:
    """With nothing set, SaaS settings load (the product code comes from each customer)."""
    settings = load_settings({}, for_saas=True)
    assert settings.product_code == ""
    assert settings.usage_store is None
    with pytest.raises(ConfigurationError) as refused:
        load_settings({})
    assert refused.value.variable == "MARKETPLACE_PRODUCT_CODE"


def test_usage_store_url_is_checked_without_echoing_it() -> None:
    """A store URL of an unknown scheme names MARKETPLACE_USAGE_STORE and hides the value."""
    secret = "mysql://user:hunter2@db/usage"
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"MARKETPLACE_USAGE_STORE": secret}, for_saas=True)
    assert refused.value.variable == "MARKETPLACE_USAGE_STORE"
    assert "hunter2" not in str(refused.value)
    url = "postgresql://app@db/usage"
    assert load_settings({"MARKETPLACE_USAGE_STORE": url}, for_saas=True).usage_store == url
