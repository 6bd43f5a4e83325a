"""The durable usage store shared by container metering and SaaS reporting (see ``_base``)."""
