"""docs/emulator.md says what the emulator's code does: its option table and its control API."""

from __future__ import annotations

import re
from pathlib import Path

from marketplace_entitlement.emulator import Emulator, _control
from marketplace_entitlement.emulator._cli import ENV_PREFIX, OPTIONS

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()


def table_after(heading: str) -> list[list[str]]:
    """The rows (cells stripped, without the header) of the first table after ``heading``."""
    rows: list[list[str]] = []
    for line in PAGE[PAGE.index(heading) :].splitlines()[1:]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if not set("".join(cells)) <= set("- "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]


def test_option_table_matches_the_command_line() -> None:
    """Each option of ``emulator --help`` has a row, in order, with its variable and default."""
    rows = table_after("## Command line")
    documented = [
        (row[0].strip("`").split()[0], row[1].split()[0].strip("`"), row[2]) for row in rows
    ]
    assert [(flag, variable) for flag, variable, _ in documented] == [
        (option.flags[0], ENV_PREFIX + option.env) for option in OPTIONS
    ]
    for (flag, _, default), option in zip(documented, OPTIONS, strict=True):
        if option.default and not option.repeatable:
            assert default == f"`{option.default}`", flag


def test_control_api_table_lists_every_documented_route() -> None:
    """Every route of the control API's own summary has a row in the page's Control API table."""
    documented = " ".join(row[0] for row in table_after("## Control API"))
    assert _control.__doc__ is not None
    paths = set(re.findall(r"/_emulator/[a-z-]+", _control.__doc__))
    assert {"/_emulator/metered", "/_emulator/batch-metered"} <= paths
    missing = {path for path in paths if path not in documented}
    assert not missing


def test_python_method_list_names_every_public_method() -> None:
    """The Python section names every public method of ``Emulator``."""
    python = PAGE[PAGE.index("## Python") :]
    methods = {
        name
        for name, value in vars(Emulator).items()
        if not name.startswith("_") and callable(value)
    }
    assert {"metered", "batch_metered"} <= methods
    assert {name for name in methods if f"`{name}" not in python} == set()
