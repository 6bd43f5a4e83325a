"""`marketplace-entitlement usage send` and `usage status`, as cron and an operator run them."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from typing import Any

from tests.saas.usage_helpers import accepted_totals, customer_name, license_customer, previous_hour

from marketplace_entitlement import UsageReporter
from marketplace_entitlement.emulator import Emulator


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the console entry point with ``args``."""
    return subprocess.run(
        [sys.executable, "-m", "marketplace_entitlement", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_usage_status_then_send_then_status(
    sqlite_url: str, saas_emulator: Emulator, saas_env: dict[str, str]
) -> None:
    """Status lists the open hour; send sends it (exit 0, a JSON summary); status is then empty."""
    customer = license_customer(saas_emulator)
    hour = previous_hour()
    with UsageReporter(sqlite_url, environ={}) as usage:
        usage.report(customer, "api_calls", 12, timestamp=hour)
    env = {**saas_env, "MARKETPLACE_USAGE_STORE": sqlite_url}
    before = cli("usage", "status", env=env)
    assert before.returncode == 0, before.stderr
    backlog: list[dict[str, Any]] = json.loads(before.stdout)["backlog"]
    assert [(b["dimension"], b["state"], b["quantity"]) for b in backlog] == [
        ("api_calls", "open", "12")
    ]
    assert customer.aws_account_id in backlog[0]["customer"]
    sent = cli("usage", "send", env=env)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 1
    after = json.loads(cli("usage", "status", env=env).stdout)
    assert after == {"backlog": [], "carried": [], "held": []}
    assert accepted_totals(saas_emulator) == {
        (customer_name(customer), "api_calls", hour): Decimal(12)
    }


def test_usage_send_exits_69_while_the_service_is_down(
    sqlite_url: str, saas_emulator: Emulator, saas_env: dict[str, str]
) -> None:
    """When BatchMeterUsage keeps failing, send exits 69 and the record stays for the next run."""
    customer = license_customer(saas_emulator)
    with UsageReporter(sqlite_url, environ={}) as usage:
        usage.report(customer, "api_calls", 1, timestamp=previous_hour())
    saas_emulator.inject_fault("BatchMeterUsage", "error", error="InternalServiceErrorException")
    env = {**saas_env, "MARKETPLACE_USAGE_STORE": sqlite_url}
    done = cli("usage", "send", "--retry-timeout", "1", env=env)
    assert done.returncode == 69
    assert json.loads(done.stdout)["retry"] == 1
    status = json.loads(cli("usage", "status", env=env).stdout)
    assert [b["state"] for b in status["backlog"]] == ["frozen"]


def test_a_bad_store_url_is_a_configuration_error(saas_env: dict[str, str]) -> None:
    """A store URL of another scheme exits 78 naming MARKETPLACE_USAGE_STORE."""
    done = cli("usage", "status", env={**saas_env, "MARKETPLACE_USAGE_STORE": "mysql://x/y"})
    assert done.returncode == 78
    assert "MARKETPLACE_USAGE_STORE" in done.stderr


def test_usage_send_sends_unprocessed_records_again_within_its_budget(
    sqlite_url: str, saas_emulator: Emulator, saas_env: dict[str, str]
) -> None:
    """One UnprocessedRecords answer does not end ``usage send``: it resends the record, exits 0."""
    customer = license_customer(saas_emulator)
    hour = previous_hour()
    with UsageReporter(sqlite_url, environ={}) as usage:
        usage.report(customer, "api_calls", 3, timestamp=hour)
    saas_emulator.add_fault("BatchMeterUsage:unprocessed:count=1")
    env = {**saas_env, "MARKETPLACE_USAGE_STORE": sqlite_url}
    done = cli("usage", "send", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["calls"], summary["sent"], summary["retry"]) == (2, 1, 0)
    assert accepted_totals(saas_emulator) == {
        (customer_name(customer), "api_calls", hour): Decimal(3)
    }


def test_usage_send_exits_69_when_records_stay_unprocessed(
    sqlite_url: str, saas_emulator: Emulator, saas_env: dict[str, str]
) -> None:
    """Records answered unprocessed until the budget is spent: exit 69, left frozen for next run."""
    customer = license_customer(saas_emulator)
    with UsageReporter(sqlite_url, environ={}) as usage:
        usage.report(customer, "api_calls", 1, timestamp=previous_hour())
    saas_emulator.add_fault("BatchMeterUsage:unprocessed")
    env = {**saas_env, "MARKETPLACE_USAGE_STORE": sqlite_url}
    done = cli("usage", "send", "--retry-timeout", "1", env=env)
    assert done.returncode == 69
    assert json.loads(done.stdout)["retry"] == 1
    status = json.loads(cli("usage", "status", env=env).stdout)
    assert [b["state"] for b in status["backlog"]] == ["frozen"]


def test_retry_timeout_takes_a_duration_and_shows_its_default(
    sqlite_url: str, saas_emulator: Emulator, saas_env: dict[str, str]
) -> None:
    """``--retry-timeout`` parses like every duration (``1s``, ``2m``); junk exits 78 naming it."""
    customer = license_customer(saas_emulator)
    with UsageReporter(sqlite_url, environ={}) as usage:
        usage.report(customer, "api_calls", 1, timestamp=previous_hour())
    saas_emulator.inject_fault("BatchMeterUsage", "error", error="InternalServiceErrorException")
    env = {**saas_env, "MARKETPLACE_USAGE_STORE": sqlite_url}
    done = cli("usage", "send", "--retry-timeout", "1s", env=env)
    assert done.returncode == 69, done.stderr
    bad = cli("usage", "send", "--retry-timeout", "2 minutes", env=env)
    assert bad.returncode == 78
    assert "--retry-timeout='2 minutes' is not a duration" in bad.stderr
    shown = " ".join(cli("usage", "send", "--help", env=env).stdout.split())
    assert "[default 2m]" in shown


def test_region_help_names_both_region_variables(saas_env: dict[str, str]) -> None:
    """``resolve-customer --help`` and ``usage send --help`` say AWS_DEFAULT_REGION also works."""
    for args in (("resolve-customer", "--help"), ("usage", "send", "--help")):
        shown = " ".join(cli(*args, env=saas_env).stdout.split())
        assert "[env AWS_REGION, then AWS_DEFAULT_REGION, then the platform]" in shown
