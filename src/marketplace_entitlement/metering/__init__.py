"""Custom metering for container products: record usage durably, send MeterUsage every hour."""
