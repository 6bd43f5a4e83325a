"""A SaaS product's fulfillment URL in FastAPI: AWS Marketplace's buyer lands here to sign up.

Run it with ``uvicorn app:app`` (AWS_REGION and credentials as for any AWS call). The fulfillment
URL registered with AWS Marketplace is ``https://<your host>/fulfillment``.
"""

from __future__ import annotations

import urllib.parse

from fastapi import FastAPI
from starlette.routing import Route

from marketplace_entitlement import FulfillmentASGI, SaasCustomer

app = FastAPI()

# Stands in for your database of customers, keyed by license (or legacy identifier).
CUSTOMERS: dict[str, SaasCustomer] = {}


def customer_key(customer: SaasCustomer) -> str:
    """The key a customer is stored under: the license ARN, else the legacy identifier."""
    return customer.license_arn or str(customer.customer_identifier)


async def on_customer(customer: SaasCustomer) -> str:
    """Keep the resolved customer, then send the browser on to the sign-up page (303)."""
    key = customer_key(customer)
    CUSTOMERS[key] = customer
    return "/welcome?" + urllib.parse.urlencode({"customer": key})


@app.get("/welcome")
async def welcome() -> dict[str, str]:
    """The page a new buyer lands on after the fulfillment URL resolved them."""
    return {"message": "Welcome! Finish creating your account here."}


# The fulfillment URL is served by marketplace-entitlement's ASGI app (it reads the form itself,
# bounded, so FastAPI needs no python-multipart).
app.router.routes.append(Route("/fulfillment", FulfillmentASGI(on_customer), methods=["POST"]))
