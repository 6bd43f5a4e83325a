"""Entitlement for hourly-priced containers: RegisterUsage with a nonce, PS256 verification, the gate.

The public names live in the package root (``marketplace_entitlement``); the modules here are private.
"""
