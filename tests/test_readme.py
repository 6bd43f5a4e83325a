"""The documented tables match the code, the public API is complete, and the demo command works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import marketplace_entitlement
from marketplace_entitlement import _exit_codes
from marketplace_entitlement._errors import (
    ClaimMismatchError,
    CommandNotExecutable,
    CommandNotFound,
    ConfigurationError,
    EntitlementError,
    NotEntitledError,
    ServiceUnavailableError,
    VerificationError,
)
from marketplace_entitlement._retry import _classify_service_error
from marketplace_entitlement._settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
EXIT_CODES = (ROOT / "docs" / "exit-codes.md").read_text()
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"


def table_after(heading: str, text: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table after ``heading``."""
    start = text.index(heading)
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("- "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header row


def test_variable_table_matches_the_settings() -> None:
    """Every row of the documented variable table is a setting, in order, with the code's default."""
    rows = table_after("## Variables", CONFIGURATION)
    documented = [(row[0].strip("`"), row[2].strip("`")) for row in rows]
    actual = [(option.variable, option.default_text) for option in OPTIONS]
    assert documented == actual


@pytest.mark.skipif(not CONTRACT.exists(), reason="../shared/CONTRACT.md is not beside the repo")
def test_every_contract_variable_is_implemented_with_its_default() -> None:
    """Each MARKETPLACE_* variable of CONTRACT.md exists in the settings with the same default."""
    contract = table_after("## Environment", CONTRACT.read_text())
    defaults = {option.variable: option.default_text for option in OPTIONS}
    for variable, _, default in contract:
        assert variable.strip("`") in defaults
        assert defaults[variable.strip("`")] == default.strip("`")


def test_exit_code_table_matches_the_code() -> None:
    """Each numbered row of the exit-code table is what the code maps that failure to."""
    rows = {row[0]: row[1] for row in table_after("# Exit codes", EXIT_CODES)}
    assert set(rows) == {"the child's", "64", "65", "69", "77", "78", "126 / 127"}
    examples: dict[str, list[EntitlementError]] = {
        "65": [
            VerificationError("x"),
            ClaimMismatchError("x", claim="nonce", expected=1, actual=2),
        ],
        "69": [ServiceUnavailableError("x", aws_error_code=None, attempts=1)],
        "77": [NotEntitledError("x", aws_error_code="y")],
        "78": [ConfigurationError("x")],
        "126 / 127": [
            CommandNotExecutable("x", command="c"),
            CommandNotFound("x", command="c"),
        ],
    }
    for row, errors in examples.items():
        codes = sorted(int(code) for code in row.split(" / "))
        assert sorted({error.exit_code for error in errors}) == codes, row
    assert "usage error" in rows[str(_exit_codes.USAGE)]
    for code, meaning in rows.items():
        named = re.findall(r"`(\w+Exception)`", meaning)
        for aws_error in named:
            outcome = _classify_service_error(aws_error, "message", 400)
            assert isinstance(outcome, EntitlementError), aws_error
            assert outcome.exit_code == int(code), aws_error
    assert len(re.findall(r"`(\w+Exception)`", " ".join(rows.values()))) == 6


def test_all_is_complete_and_sorted() -> None:
    """``__all__`` lists every public name the package defines, sorted, and nothing missing."""
    # dir(), not vars(): public names are loaded on first access (PEP 562), and dir() lists them all.
    public = {
        name
        for name in dir(marketplace_entitlement)
        if name[0].isalpha()
        and name != "annotations"
        and not isinstance(getattr(marketplace_entitlement, name), ModuleType)
    }
    exported = set(marketplace_entitlement.__all__) - {"__version__"}
    assert public == exported
    assert list(marketplace_entitlement.__all__) == sorted(marketplace_entitlement.__all__)


def test_public_names_show_the_public_module() -> None:
    """Re-exported classes and functions report ``marketplace_entitlement`` as their module."""
    for name in marketplace_entitlement.__all__:
        if name != "__version__":
            assert getattr(marketplace_entitlement, name).__module__ == "marketplace_entitlement"


def test_import_has_no_side_effects() -> None:
    """Importing the package imports no botocore, starts no thread, adds no logging handler."""
    code = (
        "import logging, sys, threading\n"
        "import marketplace_entitlement\n"
        "assert 'botocore' not in sys.modules, 'botocore imported'\n"
        "assert threading.active_count() == 1, 'thread started'\n"
        "assert not logging.getLogger().handlers, 'root logger configured'\n"
        "assert not logging.getLogger('marketplace_entitlement').handlers, 'handler added'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_readme_demo_command_passes() -> None:
    """The demo behind the README's first command shows entitled (0), refused (77) and forged (65)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "application: started" in result.stdout
    assert result.stdout.count("as expected") == 3
