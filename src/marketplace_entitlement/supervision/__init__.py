"""The PID 1 side of ``run``: signal forwarding, reaping, and supervising CMD as tini would.

The modules here are private; ``marketplace-entitlement run`` is their public face.
"""
