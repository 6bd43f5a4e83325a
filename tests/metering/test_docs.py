"""docs/metering.md's settings table matches the code, and the package exports the metering API."""

from __future__ import annotations

from pathlib import Path

import marketplace_entitlement
from marketplace_entitlement._settings import OPTIONS
from marketplace_entitlement.metering._config import SETTING_NAMES

PAGE = Path(__file__).resolve().parents[2] / "docs" / "metering.md"


def test_settings_table_matches_the_metering_options() -> None:
    """Every metering setting is a row of the page's table, in order, with the code's default."""
    text = PAGE.read_text()
    start = text.index("## Settings")
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text[start:].split("\n## ")[0].splitlines()
        if line.startswith("| `")
    ]
    documented = [(row[0].strip("`"), row[2].strip("`")) for row in rows]
    expected = [(o.variable, o.default_text) for o in OPTIONS if o.name in SETTING_NAMES]
    assert documented == expected


def test_metering_names_are_exported() -> None:
    """record_usage, start_metering and their types are public names of the package."""
    for name in (
        "record_usage",
        "start_metering",
        "Metering",
        "MeteringEntitlement",
        "UsageRecordError",
    ):
        assert name in marketplace_entitlement.__all__
        assert getattr(marketplace_entitlement, name).__module__ == "marketplace_entitlement"
