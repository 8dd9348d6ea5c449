"""Throw-away servers: a LocalServer in a temporary folder of its own, on a free port, removed afterwards.

Used where a lesson or a measurement needs a server it may break or weaken without touching the shared
one: notebook 06 runs one out of connections; the authentication-method comparison runs on one that
has ``trust`` and ``md5`` rules (``comparison_server``), which the kit's own server never has.
"""
from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .daemon import free_port
from .postgres import LocalServer


class ThrowawayServer(LocalServer):
    """A LocalServer in a temporary folder of its own: ``destroy()`` also removes that folder
    (the env file, pgpass and lock files the server writes next to its data)."""

    def destroy(self) -> None:
        super().destroy()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def start_throwaway_server(prefix: str = "pgfactory-throwaway-", **options: Any) -> ThrowawayServer:
    """Start a fresh server in a new temporary folder on a free port (``options`` go to LocalServer).
    ``destroy()`` stops it and removes the folder; an ``atexit`` hook does so anyway if the process
    exits first. Starting takes a second or two."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = ThrowawayServer(data_dir=folder / "data", port=free_port(), **options)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    atexit.register(server.destroy)
    return server


@contextlib.contextmanager
def throwaway_server(**options: Any) -> Iterator[ThrowawayServer]:
    """``with throwaway_server(...) as srv:`` — started on entry, stopped and removed on exit."""
    server = start_throwaway_server(**options)
    try:
        yield server
    finally:
        server.destroy()
        atexit.unregister(server.destroy)


@contextlib.contextmanager
def comparison_server(server: LocalServer | None = None) -> Iterator[LocalServer]:
    """A server for comparing authentication methods: ``server`` itself when it was made for that
    (``compare_auth=True``), else a private, throw-away one with the same binaries, removed on exit."""
    if server is not None and getattr(server, "compare_auth", False):
        yield server
        return
    bin_dir = server.bin_dir if server is not None else None
    # The default max_connections: a bench run with pools, threads and a monitor may hold many at once.
    with throwaway_server(prefix="pgfactory-auth-", bin_dir=bin_dir, compare_auth=True) as private:
        yield private
