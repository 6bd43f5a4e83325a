"""Tests of the seller-facing examples in examples/."""
