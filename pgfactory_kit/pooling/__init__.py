"""The code a learner copies: ``ReusedConnection`` (reuse.py) and ``ConnectionPool`` (pool.py), with the
connection health checks (health.py) and fork detection (fork.py) they share. Imports only the bottom
layer (settings, factory, errors)."""
