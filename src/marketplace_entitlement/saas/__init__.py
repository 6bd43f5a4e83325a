"""SaaS products: resolve a buyer's registration token, report usage with BatchMeterUsage."""
