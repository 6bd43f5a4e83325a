"""The Flask and FastAPI examples serve a fulfillment POST end to end against the emulator."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from marketplace_entitlement.emulator import Emulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN_FIELD = "x-amzn-marketplace-token"


def load_example(name: str) -> ModuleType:
    """Import examples/<name>/app.py as a fresh module (each test gets its own app)."""
    module_name = f"example_{name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def flask_example(saas_env: dict[str, str]) -> Iterator[ModuleType]:
    """The Flask example, its resolver reading the environment that points at the emulator."""
    yield load_example("saas-flask")
    sys.modules.pop("example_saas_flask", None)


@pytest.fixture
def fastapi_example(saas_env: dict[str, str]) -> Iterator[ModuleType]:
    """The FastAPI example, its resolver reading the environment that points at the emulator."""
    yield load_example("saas-fastapi")
    sys.modules.pop("example_saas_fastapi", None)


def test_flask_fulfillment_post_resolves_and_redirects(
    flask_example: ModuleType, saas_emulator: Emulator
) -> None:
    """Flask: a buyer's form POST is resolved, stored by the callback and redirected with 303."""
    made = saas_emulator.create_customer("saas-prod", new_integration=True)
    client = flask_example.app.test_client()
    answer = client.post("/fulfillment", data={TOKEN_FIELD: made.registration_token})
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/welcome?customer=")
    stored = flask_example.CUSTOMERS[made.license_arn]
    assert stored.aws_account_id == made.aws_account_id
    assert stored.agreement_id == made.agreement_id
    assert client.get(answer.headers["Location"]).status_code == 200
    assert len(saas_emulator.requests("ResolveCustomer")) == 1


def test_flask_fulfillment_refusals(flask_example: ModuleType, saas_emulator: Emulator) -> None:
    """Flask: no token or a bad token is a 400 page; GET is 405; a 100 KB form is 413 unresolved."""
    client = flask_example.app.test_client()
    missing = client.post("/fulfillment", data={"other": "x"})
    assert missing.status_code == 400
    assert TOKEN_FIELD in missing.get_data(as_text=True)
    invalid = client.post("/fulfillment", data={TOKEN_FIELD: "forged"})
    assert invalid.status_code == 400
    assert "AWS Marketplace" in invalid.get_data(as_text=True)
    assert client.get("/fulfillment").status_code == 405
    huge = client.post("/fulfillment", data={TOKEN_FIELD: "t" * 100_000})
    assert huge.status_code == 413
    assert len(saas_emulator.requests("ResolveCustomer")) == 1  # only the forged token was sent
    assert flask_example.CUSTOMERS == {}


def test_fastapi_fulfillment_post_resolves_and_redirects(
    fastapi_example: ModuleType, saas_emulator: Emulator
) -> None:
    """FastAPI: a legacy buyer's form POST is resolved by the async callback, then 303."""
    made = saas_emulator.create_customer("saas-prod", customer_identifier="cust-42")
    with TestClient(fastapi_example.app) as client:
        answer = client.post(
            "/fulfillment", data={TOKEN_FIELD: made.registration_token}, follow_redirects=False
        )
        assert answer.status_code == 303
        assert client.get(answer.headers["location"]).status_code == 200
    stored = fastapi_example.CUSTOMERS[made.license_arn]
    assert stored.customer_identifier == "cust-42"


def test_fastapi_fulfillment_refusals(fastapi_example: ModuleType, saas_emulator: Emulator) -> None:
    """FastAPI: an expired token is a 400 page, a JSON body 415, a 100 KB form 413."""
    expired = saas_emulator.create_customer("saas-prod", expired=True)
    with TestClient(fastapi_example.app) as client:
        post: Any = client.post
        assert (
            post("/fulfillment", data={TOKEN_FIELD: expired.registration_token}).status_code == 400
        )
        assert post("/fulfillment", json={TOKEN_FIELD: "x"}).status_code == 415
        assert post("/fulfillment", data={TOKEN_FIELD: "t" * 100_000}).status_code == 413
    assert fastapi_example.CUSTOMERS == {}
