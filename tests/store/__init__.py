"""Contract tests of the durable usage store, for every backend."""
