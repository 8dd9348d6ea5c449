"""The walkthrough as learners use it: JupyterLab in headless Chromium, Run → Run All Cells.

One JupyterLab (started like ``make lab``: the kit's database up, the kit's kernel registered) and one browser
serve every notebook in ``notebooks/0*.ipynb``; each notebook is its own test. The notebooks are
served from a temporary copy, so the repository's notebooks are never saved with outputs.
Screenshots land in ``test-artifacts/browser/``.

    .venv/bin/python -m pytest -m browser          # needs /usr/bin/chromium (apt-get install chromium)
    PGFACTORY_README_SCREENSHOT=1 ...              # also refresh docs/img/jupyterlab.png
"""
from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_support import (
    CHROMIUM,
    ROOT,
    JupyterLab,
    KitDatabase,
    LabNotebook,
    NotebookRun,
    copy_project_for_lab,
    ensure_kernel_registered,
    kernel_environment,
    launch_chromium,
    makes_plots,
    notebook_sequence,
    write_probe_notebook,
)
from tests.conftest import free_port

pytestmark = pytest.mark.browser

# Another folder can stand in for notebooks/ (for working on this harness): PGFACTORY_BROWSER_NOTEBOOKS=DIR.
NOTEBOOK_DIR = Path(os.environ.get("PGFACTORY_BROWSER_NOTEBOOKS", ROOT / "notebooks")).resolve()
NOTEBOOKS = notebook_sequence(NOTEBOOK_DIR)
ARTIFACTS = ROOT / "test-artifacts" / "browser"
README_IMAGE = ROOT / "docs" / "img" / "jupyterlab.png"
# The notebook whose screenshot goes into the README: the headline measurement, else the first with a plot.
README_NOTEBOOK_PREFIX = "05_"
# A quick notebook takes well under a minute with nbval; the browser adds rendering on 2 cores.
RUN_TIMEOUT_S = float(os.environ.get("PGFACTORY_BROWSER_TIMEOUT", "120"))
# The lesson roles' password for this run: distinctive, so a leak onto the page is a plain substring search.
LEARNER_PASSWORD = "Browser-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """``make lab`` in a temporary project: the kit's database up, then JupyterLab on a copy of the notebooks."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's Chromium (`apt-get install chromium`; "
                    ".ci/run does) to run the browser test")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    ensure_kernel_registered()
    home = tmp_path_factory.mktemp("lab-home")
    served = copy_project_for_lab(home, NOTEBOOK_DIR)
    db_port = free_port()
    env = kernel_environment(home, db_port, password=LEARNER_PASSWORD)
    database = KitDatabase(home, db_port, env)
    jupyter = JupyterLab(served, free_port(), env, state_dir=home / ".lab-state")
    try:
        database.up()
        jupyter.start()
        yield jupyter
    finally:
        try:
            jupyter.stop()
        finally:
            database.destroy()


@pytest.fixture(scope="module")
def browser(lab: JupyterLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium with a fresh profile (a Playwright BrowserContext); closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
        try:
            yield context
        finally:
            context.close()


def _explain(run: NotebookRun) -> str:
    notes = f" Notes: {'; '.join(run.notes)}." if run.notes else ""
    return f"[{run.name}, kernel {run.kernel!r}, {run.seconds:.0f} s]{notes}"


def _keep_for_readme(notebook: Path, screenshot: Path, run: NotebookRun) -> None:
    """With PGFACTORY_README_SCREENSHOT=1, the chosen notebook's screenshot (with a plot) becomes the README's."""
    if os.environ.get("PGFACTORY_README_SCREENSHOT") != "1" or not run.images:
        return
    plotting = [nb for nb in NOTEBOOKS if makes_plots(nb)]
    preferred = [nb for nb in plotting if nb.name.startswith(README_NOTEBOOK_PREFIX)] or plotting
    if preferred and preferred[0].name == notebook.name:
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, README_IMAGE)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_run_all_cells_in_jupyterlab_shows_no_error_and_draws_the_plots(
        notebook: Path, lab: JupyterLab, browser) -> None:
    page = browser.new_page()
    lab_notebook = LabNotebook(page, lab, lab.root_dir / notebook.name)
    try:
        run = lab_notebook.run(timeout_s=RUN_TIMEOUT_S)
        screenshot = lab_notebook.screenshot(ARTIFACTS / f"{notebook.stem}.png", run)
    finally:
        page.close()
        lab.shutdown_kernels()

    running = [cell.where() for cell in run.cells if cell.prompt == "[*]:"]
    assert run.finished, (f"Run All Cells had not finished after {RUN_TIMEOUT_S:.0f} s; still running or "
                          f"queued: {', '.join(running) or 'none shown'} {_explain(run)} See {screenshot}.")
    errors = run.unexpected_errors()
    assert not errors, f"cells show errors: {' | '.join(errors)} {_explain(run)} See {screenshot}."
    skipped = run.not_executed()
    if skipped:
        stopper = next((c for c in run.cells if c.may_raise and not c.tagged_to_raise and c.executed), None)
        hint = (f" JupyterLab stops Run All at an error unless the cell is tagged 'raises-exception'; "
                f"{stopper.where()} is only marked NBVAL_RAISES_EXCEPTION." if stopper else "")
        assert not skipped, (f"{len(skipped)} code cells never ran, first {skipped[0].where()}.{hint} "
                             f"{_explain(run)} See {screenshot}.")
    assert LEARNER_PASSWORD not in run.text, f"the page shows the database password {_explain(run)}"
    assert LEARNER_PASSWORD not in (lab.root_dir / notebook.name).read_text(encoding="utf-8"), \
        f"the saved notebook holds the database password {_explain(run)}"
    if makes_plots(notebook):
        assert run.images > 0, (f"the notebook's code draws figures but no image output rendered "
                                f"{_explain(run)} See {screenshot}.")
    _keep_for_readme(notebook, screenshot, run)


def test_the_checks_tell_errors_from_warnings_and_see_plots(lab: JupyterLab, browser) -> None:
    """Guards the test above against passing blind (e.g. a JupyterLab whose DOM changed): a probe
    notebook with one of everything must be judged exactly right."""
    probe = write_probe_notebook(lab.root_dir / "probe_for_the_browser_test.ipynb")
    page = browser.new_page()
    try:
        run = LabNotebook(page, lab, probe).run(timeout_s=RUN_TIMEOUT_S)
    finally:
        page.close()
        lab.shutdown_kernels()
    warning, plot, logged, meant, error, after = run.cells
    assert run.finished
    assert warning.executed and not warning.tracebacks and warning.saved_errors == []
    assert plot.images == 1 and run.images == 1
    assert logged.executed and logged.tracebacks and logged.saved_errors == []
    assert meant.tracebacks and meant.saved_errors == ["ValueError: shown on purpose"]
    assert error.tracebacks and error.saved_errors == ["ZeroDivisionError: division by zero"]
    assert run.unexpected_errors() == [
        "code cell 3 ('import traceback') printed a traceback on stderr without raising, "
        "ending \"KeyError: 'missing'\"",
        "code cell 5 ('1 / 0') raised ZeroDivisionError: division by zero"]
    assert run.not_executed() == [after]
    assert "a warning is not an error" in run.text
