"""A SaaS product's fulfillment URL in Flask: AWS Marketplace's buyer lands here to sign up.

Run it with ``flask --app app run`` (AWS_REGION and credentials as for any AWS call). The
fulfillment URL registered with AWS Marketplace is ``https://<your host>/fulfillment``.
"""

from __future__ import annotations

import urllib.parse

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from marketplace_entitlement import FulfillmentWSGI, SaasCustomer

app = Flask(__name__)

# Stands in for your database of customers, keyed by license (or legacy identifier).
CUSTOMERS: dict[str, SaasCustomer] = {}


def customer_key(customer: SaasCustomer) -> str:
    """The key a customer is stored under: the license ARN, else the legacy identifier."""
    return customer.license_arn or str(customer.customer_identifier)


def on_customer(customer: SaasCustomer) -> str:
    """Keep the resolved customer, then send the browser on to the sign-up page (303)."""
    key = customer_key(customer)
    CUSTOMERS[key] = customer
    return "/welcome?" + urllib.parse.urlencode({"customer": key})


@app.get("/welcome")
def welcome() -> str:
    """The page a new buyer lands on after the fulfillment URL resolved them."""
    return "Welcome! Finish creating your account here."


# The fulfillment URL is served by marketplace-entitlement's WSGI app, mounted at /fulfillment.
app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, {"/fulfillment": FulfillmentWSGI(on_customer)}
)
