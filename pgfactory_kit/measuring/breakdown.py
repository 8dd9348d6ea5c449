"""Where the milliseconds of a new connection go: TCP, backend start, authentication, TLS, first query.

Each part is measured, not assumed: a raw TCP connect; logins that differ in one thing only (trust vs
md5 vs scram-sha-256 roles; TCP vs Unix socket; sslmode disable vs require); the first
query on a new connection against a query on a warm one. Probes take turns (round-robin) so drift
hits all alike; each part is a difference of medians, so the parts of a bar add up only roughly.
The logins run on a private, throw-away server (``compare_auth=True``) started for the measurement and
removed afterwards: the kit's own server lets no one in without a password, and must not.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import psycopg2

from ..servers.postgres import LocalServer
from ..servers.throwaway import comparison_server
from ..settings import ConnectionSettings

COMPONENTS = ("TCP handshake", "backend start + session set-up", "TLS handshake", "password authentication",
              "first query on the new connection", "query on a reused connection")


def _timed(fn: Callable[[], Any]) -> int:
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


def _tcp_connect(host: str, port: int) -> Callable[[], None]:
    def probe() -> None:
        sock = socket.create_connection((host, port), timeout=10)
        sock.close()
    return probe


def _login(settings: ConnectionSettings) -> Callable[[], None]:
    kwargs = settings.connect_kwargs()

    def probe() -> None:
        psycopg2.connect(**kwargs).close()
    return probe


def _queries(settings: ConnectionSettings, out: dict[str, list[int]]) -> Callable[[], None]:
    """Open a connection (untimed), then time its first SELECT 1 and a second one."""
    kwargs = settings.connect_kwargs()

    def probe() -> None:
        conn = psycopg2.connect(**kwargs)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for key in ("first_query", "warm_query"):
                    t0 = time.perf_counter_ns()
                    cur.execute("SELECT 1")
                    cur.fetchall()
                    out[key].append(time.perf_counter_ns() - t0)
        finally:
            conn.close()
    return probe


def measure_probes(server: Any, samples: int = 40, time_limit_s: float = 120.0) -> tuple[dict[str, float], list[str]]:
    """Median milliseconds of each probe, and notes on what could not be measured here."""
    notes: list[str] = []
    tcp = {m: server.auth_settings(m).with_(sslmode="disable") for m in ("trust", "md5", "scram-sha-256")}
    sock_host = server.socket_settings().host
    probes: dict[str, Callable[[], None]] = {
        "tcp_connect": _tcp_connect(server.host, server.port),
        "trust": _login(tcp["trust"]), "md5": _login(tcp["md5"]), "scram": _login(tcp["scram-sha-256"]),
        "unix_trust": _login(tcp["trust"].with_(host=sock_host)),
        "unix_scram": _login(tcp["scram-sha-256"].with_(host=sock_host)),
    }
    if server.supports_ssl:
        probes["scram_tls"] = _login(tcp["scram-sha-256"].with_(sslmode="require"))
    else:
        notes.append("TLS not measured: this server's binaries are built without SSL (the pip ones are); "
                     "use LocalServer(bin_dir=...) with binaries built with OpenSSL to see it.")
    timings: dict[str, list[int]] = {name: [] for name in probes}
    timings.update(first_query=[], warm_query=[])
    query_probe = _queries(tcp["trust"], timings)
    deadline = time.monotonic() + time_limit_s
    for _ in range(2):  # warm-up, dropped
        for probe in probes.values():
            probe()
    timings["first_query"].clear()
    for i in range(samples):
        if time.monotonic() > deadline:
            notes.append(f"stopped after {i} samples: time limit {time_limit_s:g} s")
            break
        names = list(probes)
        rotation = i % len(names)
        for name in names[rotation:] + names[:rotation]:
            timings[name].append(_timed(probes[name]))
        query_probe()
    medians = {name: float(np.median(values)) / 1e6 for name, values in timings.items() if values}
    return medians, notes


def connect_breakdown(server: LocalServer | None = None, samples: int = 40,
                      time_limit_s: float = 120.0) -> pd.DataFrame:
    """A tidy table ``login, component, ms`` for a stacked bar: one bar per way of logging in, plus a
    query on a reused connection for scale, measured on ``comparison_server(server)``.
    ``.attrs['medians']`` holds each probe's median (ms), ``.attrs['notes']`` what was not measured
    (e.g. TLS on a server without SSL) and ``.attrs['private_server']`` where the logins ran."""
    with comparison_server(server) as target:
        m, notes = measure_probes(target, samples=samples, time_limit_s=time_limit_s)
        where = {"port": target.port, "data_dir": str(target.data_dir), "private": target is not server}
    if where["private"]:
        notes.append(f"measured on a private server (same binaries, port {where['port']}), removed afterwards: "
                     "the kit's own server accepts scram-sha-256 only")

    def part(value: float) -> float:
        return max(0.0, value)

    tcp = m["tcp_connect"]
    backend_tcp = part(m["trust"] - tcp)
    rows: list[tuple[str, str, float]] = [("reused connection (no connect)", "query on a reused connection",
                                           m["warm_query"])]
    first = m["first_query"]
    for label, key in (("trust (no password)", "trust"), ("md5", "md5"), ("scram-sha-256", "scram")):
        rows += [(label, "TCP handshake", tcp), (label, "backend start + session set-up", backend_tcp)]
        if key != "trust":
            rows.append((label, "password authentication", part(m[key] - m["trust"])))
        rows.append((label, "first query on the new connection", first))
    if "scram_tls" in m:
        label = "scram-sha-256 + TLS"
        rows += [(label, "TCP handshake", tcp), (label, "backend start + session set-up", backend_tcp),
                 (label, "TLS handshake", part(m["scram_tls"] - m["scram"])),
                 (label, "password authentication", part(m["scram"] - m["trust"])),
                 (label, "first query on the new connection", first)]
    label = "scram-sha-256, Unix socket"
    rows += [(label, "backend start + session set-up", m["unix_trust"]),
             (label, "password authentication", part(m["unix_scram"] - m["unix_trust"])),
             (label, "first query on the new connection", first)]
    table = pd.DataFrame(rows, columns=["login", "component", "ms"])
    table.attrs["medians"] = m
    table.attrs["notes"] = notes
    table.attrs["samples"] = samples
    table.attrs["private_server"] = where
    return table
