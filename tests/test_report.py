"""``pgfactory-kit report``: every lesson page and the index are written, nothing failed, and the
database password appears in no file the report writes (nor in what it prints)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from pgfactory_kit.lessons.notebooks import Execution
from pgfactory_kit.lessons.report import _link_pages, find_notebooks, write_index, write_page
from pgfactory_kit.servers.postgres import LocalServer

from .conftest import started_server

ROOT = Path(__file__).resolve().parent.parent
LESSONS = find_notebooks(ROOT / "notebooks")
PASSWORD = "Zq-distinctive-report-41c7e0-pw"
REPORT_BOUND_S = 600  # a hard bound for all lessons in quick mode


@pytest.fixture(scope="module")
def report_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with started_server(tmp_path_factory, "reportpg", password=PASSWORD) as srv:
        yield srv


@pytest.fixture(scope="module")
def report(report_server: LocalServer,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The whole report, in quick mode, against the test's own server."""
    out = tmp_path_factory.mktemp("report") / "report"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env.update({"PGFACTORY_DSN": report_server.settings().dsn(), "PGFACTORY_DATA_DIR": str(report_server.data_dir),
                "PGFACTORY_HOME": str(ROOT)})
    cmd = [sys.executable, "-m", "pgfactory_kit.cli", "report", "--out", str(out), "--quick"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=REPORT_BOUND_S)
    return out, result


@pytest.mark.notebooks
def test_report_runs_every_lesson_cleanly_and_writes_a_page_for_each(report) -> None:
    out, result = report
    assert result.returncode == 0, f"report failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    index = (out / "index.html").read_text(encoding="utf-8")
    for lesson in LESSONS:
        page = out / f"{lesson.stem}.html"
        assert page.is_file(), f"no page for {lesson.name}"
        assert f'href="{lesson.stem}.html"' in index, f"the index does not link {lesson.name}"
        text = page.read_text(encoding="utf-8")
        # IPython heads every error output with this (on the exception's line).
        assert "Traceback (most recent call last)" not in text, f"{page.name} shows an error output"
    assert index.count("ran cleanly") == len(LESSONS) + 1  # each row, plus the summary sentence
    assert "✘ failed" not in index


@pytest.mark.notebooks
def test_report_never_contains_the_database_password(report) -> None:
    out, result = report
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files, "the report wrote nothing"
    leaks = [str(p.relative_to(out)) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert not leaks, f"the password appears in {leaks}"
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.notebooks
def test_report_links_notebooks_to_pages_and_lists_the_saved_measurements(report) -> None:
    out, _ = report
    index = (out / "index.html").read_text(encoding="utf-8")
    for data_file in sorted((out / "data").glob("*.csv")):
        assert f'data/{data_file.name}' in index
    page = (out / f"{LESSONS[0].stem}.html").read_text(encoding="utf-8")
    assert re.search(r'href="01_[^"]+\.html"', page), "the link to the next lesson points at its page"


# ------------------------------------------------------------------------------ pieces, without a kernel
def _executed(tmp_path: Path, text: str, error: str | None = None) -> Execution:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 99 · A title\n\nNext: [on](01_blog_factory.ipynb)"),
        nbformat.v4.new_code_cell("print(x)", outputs=[nbformat.v4.new_output("stream", name="stdout", text=text)]),
    ])
    return Execution(tmp_path / "99_fake.ipynb", nb, 0.5, error)


def test_write_page_scrubs_a_leaked_password_and_marks_the_lesson_failed(tmp_path: Path) -> None:
    result = write_page(_executed(tmp_path, f"oops {PASSWORD}\n"), tmp_path, PASSWORD)
    page = (tmp_path / result.page).read_text(encoding="utf-8")
    assert PASSWORD not in page and "****" in page
    assert result.error and "password" in result.error and PASSWORD not in result.error
    assert result.title == "99 · A title"


def test_write_page_keeps_a_clean_lesson_clean(tmp_path: Path) -> None:
    result = write_page(_executed(tmp_path, "all fine\n"), tmp_path, PASSWORD)
    assert result.error is None and (tmp_path / "99_fake.html").is_file()


def test_index_lists_failures_with_their_error_and_never_the_password(tmp_path: Path) -> None:
    ok = write_page(_executed(tmp_path, "fine\n"), tmp_path, PASSWORD)
    bad = write_page(_executed(tmp_path, "x\n", error=f"AssertionError: boom {PASSWORD}"), tmp_path, PASSWORD)
    index = write_index([ok, bad], tmp_path, "postgresql://u:****@h:1/d", True, [], secret=PASSWORD).read_text()
    assert "✘ failed" in index and "AssertionError: boom" in index and PASSWORD not in index


def test_links_between_notebooks_become_links_between_pages() -> None:
    assert _link_pages('<a href="02_psycopg2_connection_factory.ipynb">') == \
        '<a href="02_psycopg2_connection_factory.html">'
    assert _link_pages('<a href="https://example.org/x.ipynb">') == '<a href="https://example.org/x.ipynb">'


def test_a_failing_notebook_is_reported_with_its_error_not_raised(tmp_path: Path) -> None:
    from pgfactory_kit.lessons.notebooks import execute

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("assert 1 == 2, 'the claim no longer holds'")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "98_failing.ipynb"
    nbformat.write(nb, path)
    result = write_page(execute(path), tmp_path, PASSWORD)
    assert result.error == "AssertionError: the claim no longer holds"
    assert "Traceback (most recent call last)" in (tmp_path / result.page).read_text(encoding="utf-8")
