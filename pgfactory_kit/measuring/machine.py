"""What a measurement ran on: PostgreSQL version, auth, transport, added RTT, CPUs, package versions.

Every results file carries this, and every figure shows ``summary_line()``, so a number is never
separated from the machine and network that produced it. No password ever goes in here.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from typing import Any

PACKAGES = ("pgfactory-kit", "psycopg2-binary", "psycopg2", "psycopg", "psycopg-pool", "pandas", "numpy",
            "matplotlib")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers (missing ones are left out)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def server_version(conn: Any) -> str:
    """``SHOW server_version`` on an open connection (e.g. '18.6')."""
    cur = conn.cursor()
    try:
        cur.execute("SHOW server_version")
        return str(cur.fetchone()[0])
    finally:
        cur.close()


def connection_transport(conn: Any) -> dict[str, Any]:
    """How ``conn`` really reaches the server, asked of the server (``pg_stat_ssl``,
    ``inet_client_addr()``), not read from the settings: ``transport`` ("unix socket" or "TCP"),
    ``tls`` (bool), ``tls_version`` (e.g. "TLSv1.3", or None). Runs one query on ``conn``."""
    with conn.cursor() as cur:
        cur.execute("SELECT inet_client_addr() IS NULL, s.ssl, s.version FROM pg_stat_ssl s "
                    "WHERE s.pid = pg_backend_pid()")
        unix, tls, version = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    return {"transport": "unix socket" if unix else "TCP", "tls": bool(tls),
            "tls_version": version if tls else None}


def describe_transport(found: dict[str, Any]) -> str:
    """One line for ``connection_transport``'s answer, e.g. ``TCP, no TLS`` or ``TCP + TLSv1.3``."""
    return f"{found['transport']} + {found['tls_version']}" if found["tls"] else f"{found['transport']}, no TLS"


def observed_transport(connect_kwargs: dict[str, Any]) -> str:
    """What a new connection made with ``connect_kwargs`` really uses, asked of the server (libpq's
    default ``sslmode=prefer`` negotiates TLS whenever the server offers it, whatever the settings say)."""
    import psycopg2

    conn = psycopg2.connect(**connect_kwargs)
    try:
        return describe_transport(connection_transport(conn))
    finally:
        conn.close()


def machine_summary(*, postgresql: str, auth: str, transport: str, rtt_ms: float, target: str,
                    **extra: Any) -> dict[str, Any]:
    """A JSON-ready dict describing the run; ``target`` is a masked DSN or host:port, never a password."""
    info: dict[str, Any] = {
        "postgresql": postgresql,
        "auth": auth,
        "transport": transport,
        "added_rtt_ms": rtt_ms,
        "target": target,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "system": platform.system(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info


def summary_line(machine: dict[str, Any]) -> str:
    """One short line for figure titles: 'PostgreSQL 18.6 · TCP · scram-sha-256 · +0 ms RTT · 2 CPUs · Linux'."""
    rtt = machine.get("added_rtt_ms", 0)
    rtt_text = ", ".join(f"{r:g}" for r in rtt) if isinstance(rtt, (list, tuple)) else f"{float(rtt):g}"
    parts = [f"PostgreSQL {machine.get('postgresql', '?')}", str(machine.get("transport", "?")),
             str(machine.get("auth", "?")), f"+{rtt_text} ms RTT added",
             f"{machine.get('cpu_count', '?')} CPUs", recorded_system(machine)]
    return " · ".join(parts)


def recorded_system(machine: dict[str, Any]) -> str:
    """The operating system the run was recorded on (not the reader's): ``system``, or for records made
    before it existed the first word of ``platform`` ('Linux-6.1-x86_64-with-glibc2.36' -> 'Linux')."""
    if machine.get("system"):
        return str(machine["system"])
    return str(machine.get("platform") or "?").split("-", 1)[0] or "?"
