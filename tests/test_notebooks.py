"""The notebooks: stored clean, built to the template, and each one (and each solution) runs top
to bottom under nbval in a fresh kernel, in quick mode, against the tests' own server."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import nbformat
import pytest

from pgfactory_kit.lessons.notebooks import EXPECTED_KEY, is_checked, with_expected_outputs
from pgfactory_kit.servers.postgres import LocalServer

from .conftest import started_server

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
LESSONS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((NOTEBOOK_DIR / "solutions").glob("[0-9][0-9]_*.ipynb"))
ALL_NOTEBOOKS = LESSONS + SOLUTIONS
# Distinctive, so that a leak into any output is found by a plain substring search.
PASSWORD = "Zq-notebooks-7b1e9c-never-printed"
QUICK_BOUND_S = 90  # a hard bound on one notebook in quick mode (they take well under 30 s)


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(NOTEBOOK_DIR)) for p in paths]


def notebook_env(server: LocalServer, **extra: str) -> dict[str, str]:
    """The environment a notebook kernel inherits: quick mode, pointed at ``server`` only."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k not in ("DATABASE_URL",)}
    env.update({
        "PGFACTORY_QUICK": "1",
        "PGFACTORY_DSN": server.settings().dsn(),
        "PGFACTORY_DATA_DIR": str(server.data_dir),
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
        "PGFACTORY_HOME": str(ROOT),
    })
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def notebook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server of the notebooks' own: 08 restarts it, 01 counts its sessions exactly."""
    with started_server(tmp_path_factory, "nbpg", password=PASSWORD) as srv:
        yield srv


# ------------------------------------------------------------------------------ stored clean, built to the template
def _committed_text(path: Path) -> str:
    """The notebook as git stores it (the index), else the file: a learner who ran and saved a notebook
    in `make lab` has outputs in the working tree, which is fine as long as they are not committed."""
    result = subprocess.run(["git", "show", f":{path.relative_to(ROOT).as_posix()}"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_committed_notebook_has_no_outputs_or_execution_counts(path: Path) -> None:
    nb = nbformat.reads(_committed_text(path), as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} have outputs or execution counts; "
                       "clear them before committing (Kernel > Restart and Clear Outputs, then save)")


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_notebook_uses_the_python3_kernel_and_a_parameters_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", []), \
        f"{path.name}: the first code cell must be tagged 'parameters'"
    assert "quick_mode()" in code[0].source, f"{path.name}: the parameters cell sets QUICK = quick_mode()"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_every_checked_cell_records_its_expected_output(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    missing = [i for i, c in enumerate(nb.cells) if is_checked(c) and EXPECTED_KEY not in c.metadata]
    assert not missing, (f"{path.name}: cells {missing} are marked NBVAL_CHECK_OUTPUT but have no "
                         f"metadata[{EXPECTED_KEY!r}]; run `python -m pgfactory_kit.lessons.notebooks record {path}`")


@pytest.mark.parametrize("path", LESSONS, ids=_ids(LESSONS))
def test_lesson_opens_with_question_and_ends_with_what_we_saw_and_a_challenge(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{path.name}: starts with a title"
    for word in ("Question", "Time needed", "You will be able to"):
        assert word in first.source, f"{path.name}: the opening cell names its {word!r}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Challenge" in markdown, f"{path.name}: has a Challenge exercise"
    assert "What we saw" in markdown, f"{path.name}: ends with 'What we saw'"
    assert any("pgfactory_kit.lessons.exercises" in c.source for c in nb.cells if c.cell_type == "code"), \
        f"{path.name}: the challenge uses a checker from pgfactory_kit.exercises"
    asserts = sum(c.source.count("assert ") for c in nb.cells if c.cell_type == "code")
    assert asserts >= 2, f"{path.name}: teaching claims are explicit assertions (found {asserts})"


@pytest.mark.parametrize("path", LESSONS, ids=_ids(LESSONS))
def test_every_lesson_has_a_solution_notebook(path: Path) -> None:
    prefix = path.name[:3]
    assert any(s.name.startswith(prefix) for s in SOLUTIONS), \
        f"no notebooks/solutions/{prefix}*_solution.ipynb for {path.name}"


# ------------------------------------------------------------------------------ executed with nbval
@pytest.fixture(scope="module")
def nbval_run(notebook_server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Run every notebook and solution under nbval once, in one pytest subprocess (one fresh kernel
    per notebook); return per-notebook results parsed from its JUnit XML.

    nbval compares only cells that have reference outputs; the committed notebooks have none, so the
    checked cells get their recorded expected text back in copies (same file names) that nbval runs."""
    work = tmp_path_factory.mktemp("nbval")
    copies = []
    for path in ALL_NOTEBOOKS:
        copy = work / path.relative_to(NOTEBOOK_DIR)
        copy.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(with_expected_outputs(nbformat.read(path, as_version=4)), copy)
        copies.append(copy)
    junit = work / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-cell-timeout=60", "-p", "no:cacheprovider",
           "-q", "--no-header", "-o", "addopts=", "-o", "junit_family=xunit1", "--rootdir", str(work),
           f"--junitxml={junit}", *map(str, copies)]
    bound = QUICK_BOUND_S * max(1, len(copies))
    try:
        result = subprocess.run(cmd, cwd=work, env=notebook_env(notebook_server), capture_output=True,
                                text=True, timeout=bound)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the notebooks did not finish within {bound}s in quick mode: {str(exc.stdout)[-3000:]}")
    output = result.stdout + result.stderr
    assert PASSWORD not in output, "a notebook printed the database password"
    assert junit.exists(), f"nbval did not run:\n{output[-4000:]}"
    results: dict[str, dict] = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        key = case.get("file", "")  # the notebook's path relative to the copies' folder
        entry = results.setdefault(key, {"cells": 0, "seconds": 0.0, "failures": []})
        entry["cells"] += 1
        entry["seconds"] += float(case.get("time", 0))
        for problem in list(case.iter("failure")) + list(case.iter("error")):
            text = (problem.get("message") or "") + "\n" + (problem.text or "")
            entry["failures"].append(f"{case.get('name')}: {text.strip()[-3000:]}")
    results["__output__"] = {"text": output}
    return results


@pytest.mark.notebooks
@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_notebook_runs_top_to_bottom_under_nbval_in_quick_mode(path: Path, nbval_run: dict[str, dict]) -> None:
    key = str(path.relative_to(NOTEBOOK_DIR))
    entry = nbval_run.get(key)
    assert entry is not None and entry["cells"] > 0, \
        f"{key} was not run by nbval:\n{nbval_run['__output__']['text'][-4000:]}"
    assert not entry["failures"], f"{key} failed under nbval:\n" + "\n\n".join(entry["failures"])
    print(f"{key}: {entry['cells']} cells, {entry['seconds']:.1f}s")


# ------------------------------------------------------------------------------ the challenge checkers
def test_checker_failure_says_what_was_expected_what_was_seen_and_a_hint() -> None:
    from pgfactory_kit.lessons.exercises import ExerciseFailed, check

    with pytest.raises(ExerciseFailed) as caught:
        check(False, expected="two PIDs", seen=[1], hint="append one per operation")
    text = str(caught.value)
    assert "expected: two PIDs" in text and "seen:     [1]" in text and "hint:     append one per operation" in text


def test_unattempted_challenge_prints_what_to_do_and_is_not_a_pass(capsys: pytest.CaptureFixture[str]) -> None:
    from pgfactory_kit.lessons.exercises import nb02

    verdict = nb02.check_counted_dict_row(..., ...)
    assert not verdict and "not attempted yet" in capsys.readouterr().out


def test_nb01_checker_rejects_two_connections_with_a_hint(settings) -> None:
    from pgfactory_kit.lessons.exercises import ExerciseFailed, nb01

    with pytest.raises(ExerciseFailed, match="call the factory once"):
        nb01.check_one_connection(settings, 0, [101, 102])


def test_nb08_checker_rejects_a_caller_that_does_not_retry(settings) -> None:
    import psycopg2

    from pgfactory_kit.lessons.exercises import ExerciseFailed, nb08

    def no_retry(pool, sql, params=()):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def swallow_everything(pool, sql, params=()):
        for _ in range(2):
            try:
                return no_retry(pool, sql, params)
            except psycopg2.Error:
                continue
        return None

    with pytest.raises(ExerciseFailed, match="catch psycopg2.OperationalError around"):
        nb08.check_retry(no_retry, settings)
    with pytest.raises(ExerciseFailed, match="DivisionByZero"):
        nb08.check_retry(swallow_everything, settings)
