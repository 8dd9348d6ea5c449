"""The report: run every lesson notebook headless and write HTML (``pgfactory-kit report``, in cli/report.py).

Writes ``<out>/index.html`` (the lessons with status and timing), one HTML page per notebook with its
tables and plots (nbconvert), and ``<out>/data/`` with the CSV files the notebooks save
(``lesson.save_csv`` writes into ``$PGFACTORY_REPORT_DIR``, which the report sets). Promises: the
database password never appears in any file written (pages are checked, and scrubbed if need be);
a failing notebook is reported, the others still run; the exit code is 0 only if all passed.
"""
from __future__ import annotations

import datetime as dt
import html
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..errors import scrub
from .lesson import QUICK_ENV, REPORT_DIR_ENV, connect_to_database
from .notebooks import Execution, errors_of, execute

DATA_DIR = "data"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"


@dataclass
class PageResult:
    """One notebook in the report."""

    notebook: Path
    title: str
    page: str
    seconds: float
    error: str | None


def find_notebooks(folder: Path, only: list[str] | None = None) -> list[Path]:
    """The numbered lesson notebooks in ``folder`` (not solutions), in lesson order."""
    found = sorted(Path(folder).glob(LESSON_GLOB))
    if only:
        found = [p for p in found if any(text in p.name for text in only)]
    return found


def build_report(notebooks: list[Path], out: Path, *, quick: bool = False,
                 cell_timeout: float = 900.0) -> list[PageResult]:
    """Execute ``notebooks`` one by one (progress bar on stderr) and write the report into ``out``."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    data = (out / DATA_DIR).resolve()
    data.mkdir(exist_ok=True)
    settings = connect_to_database()  # start (or find) the database once, not once per notebook
    env = kernel_environment(data, quick)
    results: list[PageResult] = []
    bar = tqdm(notebooks, unit="notebook", file=sys.stderr, dynamic_ncols=True)
    for path in bar:
        bar.set_description(path.stem)
        run = execute(path, env, cell_timeout=cell_timeout)
        results.append(write_page(run, out, settings.password))
    bar.close()
    files = sorted(p for p in data.iterdir() if p.suffix in (".csv", ".png"))
    write_index(results, out, settings.masked_dsn(), quick, files, secret=settings.password)
    return results


def kernel_environment(data_dir: Path, quick: bool) -> dict[str, str]:
    """What the kernels inherit: this environment, the CSV folder, quick mode, inline plots, no progress bars."""
    env = dict(os.environ)
    env[REPORT_DIR_ENV] = str(data_dir)
    env.pop("MPLBACKEND", None)  # the kernel's inline backend puts the plots into the pages
    env["TQDM_DISABLE"] = "1"  # progress belongs in the terminal (the report's own bar); the pages show results
    if quick:
        env[QUICK_ENV] = "1"
    return env


def notebook_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first markdown heading of the notebook."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def write_page(run: Execution, out: Path, secret: str | None) -> PageResult:
    """The executed notebook as ``<out>/<name>.html``; errors recorded, the password scrubbed."""
    from nbconvert import HTMLExporter

    error = run.error
    if error is None and errors_of(run.notebook):
        error = errors_of(run.notebook)[0]
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(run.notebook)
    body = _link_pages(body)
    if secret and secret in body:
        body = scrub(body, secret)
        error = error or "the notebook printed the database password (scrubbed from this page)"
    page = run.path.stem + ".html"
    (out / page).write_text(body, encoding="utf-8")
    title = notebook_title(run.notebook, run.path.stem)
    return PageResult(run.path, title, page, run.seconds, scrub(error, secret) if error else None)


def _link_pages(body: str) -> str:
    """Links between notebooks point at their pages in the report."""
    return re.sub(r'href="(\d\d_[^"/]+)\.ipynb"', r'href="\1.html"', body)


def write_index(results: list[PageResult], out: Path, where: str, quick: bool, files: list[Path],
                secret: str | None = None) -> Path:
    """``<out>/index.html``: every lesson with its status, time and page; the measurement files."""
    rows = []
    for r in results:
        status = ('<span class="ok">✔ ran cleanly</span>' if r.error is None
                  else f'<span class="bad">✘ failed</span><div class="err">{html.escape(r.error)}</div>')
        rows.append(f'<tr><td><a href="{html.escape(r.page)}">{html.escape(r.title)}</a></td>'
                    f"<td>{status}</td><td class='num'>{r.seconds:.1f} s</td></tr>")
    data_items = "".join(f'<li><a href="{DATA_DIR}/{html.escape(p.name)}">{html.escape(p.name)}</a></li>'
                         for p in files) or "<li>none written</li>"
    ok = sum(r.error is None for r in results)
    mode = "quick (PGFACTORY_QUICK=1: small sizes, as CI runs them)" if quick else "full (workshop sizes)"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pgfactory-kit report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }}
td.num {{ text-align: right; white-space: nowrap; }}
.ok {{ color: #1a7f37; font-weight: 600; }} .bad {{ color: #c62828; font-weight: 600; }}
.err {{ font-family: monospace; font-size: .85rem; color: #c62828; margin-top: .3rem; }}
.meta {{ color: #555; }}
</style></head><body>
<h1>pgfactory-kit: connection factories and reuse, measured</h1>
<p>Each lesson notebook below was run top to bottom, headless; its page shows the code, the tables and
the plots exactly as the run produced them. {ok} of {len(results)} ran cleanly.</p>
<p class="meta">Database: <code>{html.escape(where)}</code> · mode: {mode} · generated {when}</p>
<table><thead><tr><th>Lesson</th><th>Status</th><th>Time</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<h2>Measurements (CSV) and figures (PNG)</h2>
<ul>{data_items}</ul>
<p class="meta">Regenerate with <code>make report</code> (or <code>pgfactory-kit report --out report</code>);
open the notebooks interactively with <code>make lab</code>.</p>
</body></html>
"""
    if secret:
        text = scrub(text, secret)
    path = out / "index.html"
    path.write_text(text, encoding="utf-8")
    return path
