"""Kernels for running notebooks headless: over IPC (Unix-domain sockets) where the system has them.

A kernel on TCP logs "Kernel is running over TCP without encryption" at every start — once per notebook in
`make report`, a warning about nothing, since client and kernel are the same user on the same machine. On
IPC the sockets are files in a private folder (mode 0700), so there is no port to eavesdrop on and no warning.
Windows has no Unix-domain sockets for ZeroMQ: there kernels stay on TCP.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

from jupyter_client.manager import AsyncKernelManager
from traitlets import CaselessStrEnum, default


@functools.lru_cache(maxsize=1)
def _socket_dir() -> str:
    """One private folder per process for the kernels' socket files, removed at exit."""
    folder = tempfile.mkdtemp(prefix="pgfactory-kernels-")  # mode 0700
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


class IPCKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernels listen on Unix-domain sockets in a private folder."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    @default("ip")
    def _ip_default(self) -> str:
        return os.path.join(_socket_dir(), "kernel") if self.transport == "ipc" else super()._ip_default()


def kernel_manager_class() -> type[AsyncKernelManager]:
    """IPC where available (POSIX), else the usual TCP kernel manager."""
    return AsyncKernelManager if os.name == "nt" else IPCKernelManager
