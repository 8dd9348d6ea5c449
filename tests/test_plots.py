"""Every figure renders headless (Agg), returns a Figure, and says its units (synthetic data, no database)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pgfactory_kit.measuring import plots  # noqa: E402
from pgfactory_kit.measuring.stats import fit_rtt_model, summarize  # noqa: E402

MACHINE = {"postgresql": "18.6", "auth": "scram-sha-256", "transport": "TCP", "added_rtt_ms": 0.0, "cpu_count": 2}
COSTS_MS = {"connect_per_query": 6.0, "reused": 0.05, "pool": 0.06}


def _results(threads: int = 1, rtt: float = 0.0, scenario: str = "s") -> pd.DataFrame:
    rng = np.random.default_rng(threads)
    rows = []
    for strategy, ms in COSTS_MS.items():
        start = 0
        trips = 6 if strategy == "connect_per_query" else 1
        for op in range(40):
            ns = int((ms + trips * rtt) * rng.lognormal(0, 0.2) * 1e6)
            rows.append(dict(strategy=strategy, scenario=scenario, workload="select1", thread=0, repeat=0,
                             phase="measure", block=op // 10, op=op, start_ns=start, ns=ns, backend_pid=1,
                             threads=threads, rtt_ms=rtt, auth="scram-sha-256", transport="TCP"))
            start += ns
    return pd.DataFrame(rows)


def _render(fig: Figure) -> bytes:
    assert isinstance(fig, Figure)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    return buffer.getvalue()


def _texts(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return " | ".join(parts)


@pytest.fixture(autouse=True)
def no_pyplot_windows():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "a plot function opened a pyplot figure"


def test_latency_distribution_and_speedup_render_with_units_and_the_machine_line() -> None:
    results = _results()
    for fig in (plots.latency_distribution(results, MACHINE), plots.speedup(summarize(results, n_boot=100), MACHINE)):
        _render(fig)
        text = _texts(fig)
        assert "PostgreSQL 18.6" in text and "scram-sha-256" in text
    assert "milliseconds" in _texts(plots.latency_distribution(results))
    assert "median time per operation" in _texts(plots.speedup(summarize(results, n_boot=100)))


def test_thread_figures_plot_one_line_per_strategy() -> None:
    summary = summarize(pd.concat([_results(n, scenario=f"{n} threads") for n in (1, 2, 4)]), n_boot=50)
    for fig in (plots.throughput_vs_threads(summary, MACHINE), plots.p95_vs_threads(summary, MACHINE)):
        _render(fig)
        assert len(fig.axes[0].get_lines()) == len(COSTS_MS)
    assert "operations per second" in _texts(plots.throughput_vs_threads(summary))
    assert "(ms" in _texts(plots.p95_vs_threads(summary))


def test_cost_vs_rtt_draws_fitted_lines_labelled_with_round_trips() -> None:
    results = pd.concat([_results(rtt=r, scenario=f"+{r} ms") for r in (0.0, 5.0, 10.0)])
    fig = plots.cost_vs_rtt(results, fit_rtt_model(results), MACHINE)
    _render(fig)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any("connect per query" in lb and "round trips" in lb for lb in labels)
    assert "round-trip time added" in _texts(fig)


def test_connect_breakdown_stacks_components_per_login() -> None:
    breakdown = pd.DataFrame([("reused connection (no connect)", "query on a reused connection", 0.05),
                              ("scram-sha-256", "TCP handshake", 0.1),
                              ("scram-sha-256", "backend start + session set-up", 2.0),
                              ("scram-sha-256", "password authentication", 4.0),
                              ("scram-sha-256", "first query on the new connection", 0.3)],
                             columns=["login", "component", "ms"])
    breakdown.attrs["notes"] = ["TLS not measured: no SSL."]
    fig = plots.connect_breakdown(breakdown, MACHINE)
    _render(fig)
    assert "milliseconds" in _texts(fig)
    assert "6.40 ms" in [t.get_text() for t in fig.axes[0].texts]  # the scram bar's total


def test_sessions_opened_labels_sessions_against_operations() -> None:
    sessions = pd.DataFrame({"strategy": ["connect_per_query", "reused"], "operations": [50, 50],
                             "sessions_opened": [50, 1], "backend_pids": [50, 1]})
    fig = plots.sessions_opened(sessions, MACHINE)
    _render(fig)
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert "50 sessions for 50 operations" in notes and "1 sessions for 50 operations" not in notes
    assert "1 session for 50 operations" in notes
