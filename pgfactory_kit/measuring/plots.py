"""Figures from bench results, one function per figure, each returning a matplotlib ``Figure``.

Promises: no function calls ``plt.show()`` or needs a display (they work with the Agg backend);
titles and axis labels carry units; when a ``machine`` dict is given, a line under the title says
what the numbers were measured on; every strategy keeps the same colour and name in every figure.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .machine import summary_line
from .stats import strategy_rank

LABELS = {
    "connect_per_query": "connect per query (the blog)",
    "reused": "one reused connection",
    "pool": "pgfactory_kit ConnectionPool",
    "psycopg2_pool": "psycopg2 ThreadedConnectionPool",
    "psycopg_pool": "psycopg_pool (psycopg 3)",
    "pgbouncer": "connect per query via PgBouncer",
}
COLORS = {
    "connect_per_query": "#d62728", "reused": "#2ca02c", "pool": "#1f77b4", "psycopg2_pool": "#9467bd",
    "psycopg_pool": "#17becf", "pgbouncer": "#ff7f0e",
}
COMPONENT_COLORS = {
    "TCP handshake": "#8c564b", "backend start + session set-up": "#7f7f7f", "TLS handshake": "#bcbd22",
    "password authentication": "#d62728", "first query on the new connection": "#1f77b4",
    "query on a reused connection": "#2ca02c",
}
WORKLOAD_TEXT = {"select1": "SELECT 1", "select_all": "SELECT * FROM mytable",
                 "insert": "INSERT INTO mytable … + COMMIT"}


def label(strategy: str) -> str:
    """The learner-facing name of a strategy."""
    return LABELS.get(strategy, strategy)


def color(strategy: str) -> str:
    return COLORS.get(strategy, "#333333")


def _figure(title: str, machine: dict[str, Any] | None, size: tuple[float, float] = (9, 5)) -> tuple[Figure, Any]:
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    fig.suptitle(title, fontsize=13, fontweight="bold")
    if machine:
        ax.set_title(summary_line(machine), fontsize=8.5, color="#555555")
    return fig, ax


def _ms(value: float) -> str:
    """A millisecond value with sensible precision (0.043, 1.25, 37.2, 1240)."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _one_scenario(frame: pd.DataFrame, scenario: str | None) -> tuple[pd.DataFrame, str | None]:
    if "scenario" not in frame or frame["scenario"].nunique() <= 1:
        return frame, scenario if scenario is not None else (frame["scenario"].iloc[0] if len(frame) else None)
    chosen = scenario if scenario is not None else frame["scenario"].iloc[0]
    return frame[frame["scenario"] == chosen], chosen


def _workload_text(frame: pd.DataFrame) -> str:
    if "workload" in frame and len(frame):
        return WORKLOAD_TEXT.get(str(frame["workload"].iloc[0]), str(frame["workload"].iloc[0]))
    return "one operation"


def _strategy_order(frame: pd.DataFrame) -> list[str]:
    return sorted(dict.fromkeys(frame["strategy"]), key=strategy_rank)


# --------------------------------------------------------------------------------- figures
def latency_distribution(results: pd.DataFrame, machine: dict[str, Any] | None = None,
                         scenario: str | None = None) -> Figure:
    """Every measured operation's time, one row per strategy, on a log axis (box = middle half,
    whiskers = 5th-95th percentile, dots = individual operations)."""
    measured = results[results["phase"] == "measure"] if "phase" in results else results
    measured, chosen = _one_scenario(measured, scenario)
    order = _strategy_order(measured)[::-1]
    fig, ax = _figure(f"How long one operation takes ({_workload_text(measured)}), by strategy", machine,
                      (10, 1.2 + 0.9 * len(order)))
    rng = np.random.default_rng(0)
    data = [measured.loc[measured["strategy"] == s, "ns"].to_numpy() / 1e6 for s in order]
    style = dict(whis=(5, 95), showfliers=False, widths=0.55, patch_artist=True,
                 medianprops={"color": "black", "linewidth": 2})
    try:
        box = ax.boxplot(data, orientation="horizontal", **style)
    except TypeError:  # matplotlib < 3.10
        box = ax.boxplot(data, vert=False, **style)
    for patch, strategy in zip(box["boxes"], order, strict=True):
        patch.set_facecolor(color(strategy))
        patch.set_alpha(0.35)
    for i, (values, strategy) in enumerate(zip(data, order, strict=True), start=1):
        shown = values if len(values) <= 1500 else rng.choice(values, 1500, replace=False)
        ax.scatter(shown, i + rng.uniform(-0.18, 0.18, len(shown)), s=5, alpha=0.35, color=color(strategy),
                   linewidths=0)
        ax.annotate(f"median {_ms(float(np.median(values)))} ms", (float(np.max(values)), i),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_yticks(range(1, len(order) + 1), [label(s) for s in order])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _ms(v)))
    note = "box: the middle half of the operations · whiskers: 5th to 95th percentile · dots: single operations"
    ax.set_xlabel("time per operation (milliseconds, log scale: each grid step is 10× slower)\n" + note,
                  fontsize=9.5)
    ax.grid(axis="x", which="major", alpha=0.4)
    ax.margins(x=0.25)
    if chosen and "scenario" in results and results["scenario"].nunique() > 1:
        fig.text(0.01, 0.005, f"scenario: {chosen}", fontsize=8, color="#555555")
    return fig


def speedup(summary: pd.DataFrame, machine: dict[str, Any] | None = None, scenario: str | None = None) -> Figure:
    """How many times slower than the baseline (one reused connection) each strategy is: the ratio of
    medians, with its bootstrap 95% interval as an error bar."""
    part, _ = _one_scenario(summary, scenario)
    part = part.dropna(subset=["ratio"])
    baseline = summary.attrs.get("baseline", "reused")
    part = part.sort_values("ratio")
    fig, ax = _figure(f"Time per operation compared with {label(baseline)} ({_workload_text(part)})", machine,
                      (10, 1.6 + 0.75 * len(part)))
    y = np.arange(len(part))
    ratios = part["ratio"].to_numpy()
    err = np.vstack([ratios - part["ratio_low"].to_numpy(), part["ratio_high"].to_numpy() - ratios])
    ax.barh(y, ratios, color=[color(s) for s in part["strategy"]], alpha=0.8)
    ax.errorbar(ratios, y, xerr=np.clip(err, 0, None), fmt="none", ecolor="black", capsize=4, linewidth=1)
    ax.set_yticks(y, [label(s) for s in part["strategy"]])
    top = float(np.nanmax(part[["ratio", "ratio_high"]].to_numpy()))
    log = top / max(float(ratios.min()), 1e-9) > 20
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        left, right = 0.3, top * 3
        share = np.log(ratios / left) / np.log(right / left)
    else:
        left, right = 0.0, top * 2.6
        share = ratios / right
    ax.set_xlim(left, right)
    for yi, (_, row), wide in zip(y, part.iterrows(), share > 0.55, strict=True):
        if wide:  # long bar: the label goes inside it, so it never runs off the figure
            ax.annotate(_ratio_text(row, baseline), (left, yi), xytext=(8, 0), textcoords="offset points",
                        va="center", fontsize=9.5, color="white", fontweight="bold")
        else:
            ax.annotate(_ratio_text(row, baseline), (max(row["ratio_high"], row["ratio"]), yi), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=9)
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"median time per operation ÷ median of {label(baseline)}  (lower is better)\n"
                  "bars: ratio of medians · whiskers: its 95% bootstrap interval · dashed line: the baseline",
                  fontsize=9.5)
    return fig


def _ratio_text(row: pd.Series, baseline: str) -> str:
    median_text = f"median {_ms(row['median_ms'])} ms"
    if row["strategy"] == baseline:
        return f"the baseline  ({median_text})"
    interval = f"95% CI {row['ratio_low']:.2g}–{row['ratio_high']:.2g}" if row["ratio"] < 10 else \
        f"95% CI {row['ratio_low']:.0f}–{row['ratio_high']:.0f}"
    if row["ratio"] >= 1.05:
        how = f"{row['ratio']:.0f}× slower" if row["ratio"] >= 10 else f"{row['ratio']:.1f}× slower"
    elif row["ratio"] <= 0.95:
        how = f"{row['ratio']:.2f}× the time (faster)"
    else:
        how = "about the same"
    return f"{how}  ({interval};  {median_text})"


def _by_threads(summary: pd.DataFrame, column: str, title: str, ylabel: str, machine: dict[str, Any] | None,
                log: bool) -> Figure:
    fig, ax = _figure(title, machine, (11, 5))
    for strategy in _strategy_order(summary):
        part = summary[summary["strategy"] == strategy].sort_values("threads")
        ax.plot(part["threads"], part[column], marker="o", color=color(strategy), label=label(strategy))
    threads = sorted(summary["threads"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(threads, [str(t) for t in threads])
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    xlabel = "client threads running operations at the same time"
    if "n" in summary and len(summary):
        xlabel += f"  (each point: about {int(summary['n'].median())} timed operations; few points = noisy)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.4, which="both")
    fig.legend(loc="outside right center", fontsize=9)
    return fig


def throughput_vs_threads(summary: pd.DataFrame, machine: dict[str, Any] | None = None) -> Figure:
    """Operations per second (all threads together) against the number of client threads."""
    return _by_threads(summary, "ops_per_s",
                       f"Throughput as threads are added ({_workload_text(summary)}; higher is better)",
                       "operations per second, all threads together (log scale)", machine, True)


def p95_vs_threads(summary: pd.DataFrame, machine: dict[str, Any] | None = None) -> Figure:
    """The 95th-percentile time per operation against the number of client threads."""
    return _by_threads(summary, "p95_ms",
                       f"Slowest 5% of operations as threads are added ({_workload_text(summary)}; lower is better)",
                       "95th percentile time per operation (ms, log scale)", machine, True)


def cost_vs_rtt(results: pd.DataFrame, fit: pd.DataFrame, machine: dict[str, Any] | None = None) -> Figure:
    """Median time per operation at each added round-trip time, with the fitted line
    ``fixed ms + round trips × RTT`` per strategy: the slope counts the round trips."""
    measured = results[results["phase"] == "measure"] if "phase" in results else results
    fig, ax = _figure(f"What network distance costs ({_workload_text(measured)})", machine, (10, 7))
    rtts = np.array(sorted(measured["rtt_ms"].unique()), dtype=float)
    xs = np.linspace(0, rtts.max() if len(rtts) else 1, 50)
    for strategy in _strategy_order(measured):
        part = measured[measured["strategy"] == strategy]
        med = part.groupby("rtt_ms")["ns"].median() / 1e6
        row = fit[fit["strategy"] == strategy]
        text = label(strategy)
        if len(row) and np.isfinite(row["round_trips"].iloc[0]):
            fixed, trips = float(row["fixed_ms"].iloc[0]), float(row["round_trips"].iloc[0])
            ax.plot(xs, fixed + trips * xs, color=color(strategy), linewidth=1.5, alpha=0.8)
            text += f":  {_ms(fixed)} ms + {trips:.1f} round trips × RTT"
        ax.plot(med.index, med.to_numpy(), "o", color=color(strategy), label=text, markersize=7)
    ax.set_xlabel("round-trip time added between client and server (ms)")
    ax.set_ylabel("median time per operation (ms)")
    ax.set_xticks(rtts)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.4)
    fig.legend(fontsize=9, loc="outside lower center", ncols=2,
               title="dots: measured median · lines: fitted  fixed cost + round trips × RTT", title_fontsize=9)
    return fig


def connect_breakdown(breakdown: pd.DataFrame, machine: dict[str, Any] | None = None) -> Figure:
    """Where the milliseconds of a new connection go, one stacked bar per way of logging in."""
    logins = list(dict.fromkeys(breakdown["login"]))[::-1]
    components = [c for c in COMPONENT_COLORS if c in set(breakdown["component"])]
    fig, ax = _figure("Where the time of a new connection goes (and what a reused one costs)", machine,
                      (11, 2.6 + 0.75 * len(logins)))
    left = np.zeros(len(logins))
    totals = breakdown.groupby("login")["ms"].sum()
    for component in components:
        widths = np.array([breakdown.loc[(breakdown["login"] == lg) & (breakdown["component"] == component),
                                         "ms"].sum() for lg in logins])
        ax.barh(logins, widths, left=left, color=COMPONENT_COLORS[component], label=component, height=0.6)
        for y, (w, start) in enumerate(zip(widths, left, strict=True)):
            if w > 0.08 * totals.max():
                ax.text(start + w / 2, y, _ms(w), ha="center", va="center", fontsize=8, color="white")
        left += widths
    for y, login in enumerate(logins):
        ax.annotate(f"{_ms(totals[login])} ms", (left[y], y), xytext=(5, 0), textcoords="offset points",
                    va="center", fontsize=9, fontweight="bold")
    ax.set_xlabel("milliseconds (medians of measured logins; parts are differences of medians)")
    ax.margins(x=0.12)
    notes = breakdown.attrs.get("notes") or []
    fig.legend(fontsize=9, loc="outside lower center", ncols=3,
               title=("Note: " + " ".join(notes)) if notes else None, title_fontsize=8)
    return fig


def sessions_opened(sessions: pd.DataFrame, machine: dict[str, Any] | None = None) -> Figure:
    """The server's own count of sessions each strategy opened (``pg_stat_database.sessions``), next
    to the number of operations it ran."""
    part = sessions.groupby("strategy", sort=False)[["operations", "sessions_opened", "backend_pids"]].sum()
    part = part.loc[sorted(part.index, key=strategy_rank)]
    fig, ax = _figure("Connections the SERVER opened, per strategy (pg_stat_database.sessions)", machine,
                      (10, 1.6 + 0.75 * len(part)))
    order = list(part.index)[::-1]
    y = np.arange(len(order))
    counts = part.loc[order, "sessions_opened"].to_numpy()
    ax.barh(y, counts, color=[color(s) for s in order], alpha=0.85)
    for yi, strategy in zip(y, order, strict=True):
        ops = int(part.loc[strategy, "operations"])
        opened = int(part.loc[strategy, "sessions_opened"])
        text = f"{opened:,} session{'' if opened == 1 else 's'} for {ops:,} operations"
        ax.annotate(text, (max(opened, 0), yi), xytext=(6, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_yticks(y, [label(s) for s in order])
    xlabel = "new server sessions (backend processes) opened during the run, as counted by the server"
    if "repeats" in sessions and sessions["repeats"].max() > 1:
        xlabel += (f"\n{int(sessions['repeats'].max())} repeats, each starting with fresh connections "
                   "(so one reused connection = 1 session per repeat); operations include warm-ups")
    ax.set_xlabel(xlabel, fontsize=9.5)
    ax.margins(x=0.45)
    ax.set_xlim(left=0)
    return fig


# --------------------------------------------------------------------------------- the wire's conversation
LANE_COLORS = {"client": "#1f4e9c", "server": "#b35900"}
MAX_ARROWS = 40  # per panel; the rest of a long conversation is summarised in one line


def _arrow_groups(messages: pd.DataFrame) -> list[tuple[str, str, int, int]]:
    """(direction, label, round trip number or 0, messages) per run of equal consecutive messages
    (``14× ParameterStatus``). Round trip k is a run of client messages and the server's reply to it;
    client messages nobody answers (Terminate) and server messages nobody asked for get 0."""
    groups: list[list[Any]] = []
    for direction, name, summary in zip(messages["direction"], messages["name"], messages["summary"], strict=True):
        if groups and groups[-1][0] == direction and groups[-1][1] == name and name != "Query":
            groups[-1][2] += 1
        else:
            groups.append([direction, name, 1, str(summary)])
    numbers = [0] * len(groups)
    trip = 0
    for i, group in enumerate(groups):
        if group[0] == "client" and (i == 0 or groups[i - 1][0] == "server"):
            j = i
            while j < len(groups) and groups[j][0] == "client":
                j += 1
            if j < len(groups):  # the server answered this run of client messages
                trip += 1
                k = j
                while k < len(groups) and groups[k][0] == "server":
                    k += 1
                numbers[i:k] = [trip] * (k - i)
    out = []
    for (direction, name, count, summary), number in zip(groups, numbers, strict=True):
        text = f"{count}× {name}" if count > 1 else name
        if name == "Query":
            text = f"Query: {summary if len(summary) <= 30 else summary[:29] + '…'}"
        elif name == "ReadyForQuery" and summary:
            text = f"ReadyForQuery ({summary.split(' ', 1)[0]})"
        out.append((direction, text, number, count))
    return out


def sequence_diagram(conversations: dict[str, pd.DataFrame], machine: dict[str, Any] | None = None,
                     title: str = "What one operation says on the wire") -> Figure:
    """Client and server lanes per conversation (e.g. the blog's connect-per-query operation next to the
    same query on a reused connection and on a pool), one arrow per message, bursts collapsed
    (``14× ParameterStatus``), each round trip shaded and numbered. ``conversations`` maps a panel title
    to one operation's messages (``WireTap.messages()`` rows: direction, name, summary)."""
    panels = {name: _arrow_groups(frame) for name, frame in conversations.items()}
    rows = max([min(len(g), MAX_ARROWS + 1) for g in panels.values()] + [1]) + 1
    fig = Figure(figsize=(4.6 * max(len(panels), 1), 1.9 + 0.34 * rows), layout="constrained")
    fig.suptitle(title, fontsize=13, fontweight="bold")
    footnote = ("blue: client to server · orange: server to client · each shaded band (RT n) is one round trip: "
                "the client sends, then waits for the server's reply")
    if machine:
        footnote += "\n" + summary_line(machine)
    fig.supxlabel(footnote, fontsize=8.5, color="#555555")
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for ax, (name, groups) in zip(axes, panels.items(), strict=False):
        _draw_lanes(ax, name, groups, rows,
                    connects=bool(groups) and groups[0][1].startswith(("SSLRequest", "StartupMessage")))
    return fig


def _draw_lanes(ax: Any, name: str, groups: list[tuple[str, str, int, int]], rows: int, connects: bool) -> None:
    ax.set_xlim(-0.42, 1.12)
    ax.set_ylim(rows + 0.2, -1.4)
    ax.axis("off")
    for x, lane in ((0.0, "client"), (1.0, "server")):
        ax.plot([x, x], [-0.7, rows - 0.2], color="#999999", linewidth=1.2, zorder=1)
        ax.text(x, -0.95, lane, ha="center", va="bottom", fontsize=10, fontweight="bold", color=LANE_COLORS[lane])
    start = 0
    if connects:
        ax.annotate("", xy=(1, 0.35), xytext=(0, 0.0), arrowprops=dict(arrowstyle="<|-|>", color="#aaaaaa",
                                                                       linestyle="--", linewidth=1))
        ax.text(0.5, 0.05, "TCP handshake (the kernel's: not on the tap)", ha="center", va="bottom", fontsize=7.5,
                color="#777777", style="italic", bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
        ax.text(-0.4, 0.18, "TCP", fontsize=7.5, color="#777777", va="center")
        start = 1
    shown = groups[:MAX_ARROWS]
    trips = max([g[2] for g in groups] + [0])
    for trip in range(1, trips + 1):
        ys = [start + i for i, g in enumerate(shown) if g[2] == trip]
        if ys:
            ax.axhspan(min(ys) - 0.3, max(ys) + 0.55, xmin=0.0, xmax=1.0, color="#eef2f8" if trip % 2 else "#f7f7f7",
                       zorder=0)
            ax.text(-0.4, (min(ys) + max(ys)) / 2 + 0.15, f"RT {trip}", fontsize=8, va="center", color="#444444")
    for i, (direction, text, number, _) in enumerate(shown):
        y = start + i
        x0, x1 = (0.0, 1.0) if direction == "client" else (1.0, 0.0)
        style = "-" if number or direction == "server" else "--"
        ax.annotate("", xy=(x1, y + 0.4), xytext=(x0, y), zorder=3,
                    arrowprops=dict(arrowstyle="-|>", color=LANE_COLORS[direction], linewidth=1.3, linestyle=style))
        if not number and direction == "client":
            text += " (no reply awaited)"
        ax.text(0.5, y + 0.08, text, ha="center", va="bottom", fontsize=8, color=LANE_COLORS[direction], zorder=4,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.6, alpha=0.85))
    if len(groups) > MAX_ARROWS:
        ax.text(0.5, start + MAX_ARROWS + 0.2, f"… {len(groups) - MAX_ARROWS} more arrows", ha="center",
                fontsize=8, color="#555555")
    count = sum(g[3] for g in groups)
    extra = " + the TCP handshake" if connects else ""
    ax.set_title(f"{name}\n{trips} round trip{'s' if trips != 1 else ''} on the tap{extra}, {count} messages",
                 fontsize=10)


FIGURES = ("latency_distribution", "speedup", "sessions_opened", "throughput_vs_threads", "p95_vs_threads",
           "cost_vs_rtt", "connect_breakdown", "sequence_diagram")


def pool_sizes(summary: pd.DataFrame, machine: dict[str, Any] | None = None) -> Figure:
    """Two panels against client threads: throughput (ops/s) and p95 time, one line per pool size,
    the reference strategies dashed (strategies named by ``lessons.measure.pool_label``)."""
    fig = Figure(figsize=(12, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    fig.suptitle("Pool size against client threads (SELECT 1)", fontsize=13, fontweight="bold")
    if machine:
        fig.supxlabel(summary_line(machine), fontsize=8.5, color="#555555")
    strategies = list(dict.fromkeys(summary["strategy"]))
    pools = sorted((s for s in strategies if s.startswith("pool, max_size=")), key=lambda s: int(s.split("=")[1]))
    strategies = pools + [s for s in strategies if s not in pools]
    shades = colormaps["Blues"]
    for ax, column, ylabel in ((axes[0], "ops_per_s", "operations per second, all threads (log scale)"),
                               (axes[1], "p95_ms", "95th percentile time per operation (ms, log scale)")):
        for strategy in strategies:
            part = summary[summary["strategy"] == strategy].sort_values("threads")
            if strategy in pools:
                shade = 0.35 + 0.6 * pools.index(strategy) / max(1, len(pools) - 1)
                style = dict(color=shades(shade), marker="o", linestyle="-")
            else:
                style = dict(color=color(strategy), marker="s", linestyle="--")
            ax.plot(part["threads"], part[column], label=label(strategy), **style)
        threads = sorted(summary["threads"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(threads, [str(t) for t in threads])
        ax.set_yscale("log")
        ax.set_xlabel("client threads running operations at the same time")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.4, which="both")
    axes[0].set_title("throughput (higher is better)")
    axes[1].set_title("slow operations (lower is better)")
    axes[1].legend(fontsize=9)
    return fig
