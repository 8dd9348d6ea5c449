"""Helpers for the browser test: the kit's database, JupyterLab and headless Chromium, each started
the way a learner's ``make lab`` starts them and each shut down again by what started it.

Nothing here downloads a browser: Playwright drives Debian's ``/usr/bin/chromium``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KERNEL_NAME = "pgfactory-kit"
KERNEL_DISPLAY_NAME = "Python (pgfactory-kit)"
# Calls in a notebook's code that put an image in the output area.
PLOT_CALL = re.compile(r"\bplt\.|\bplot_\w+\(|\.plot\(|\bsavefig\(|\bshow_figure\(|\bfigure\(|\bplots\.")
LAB_START_TIMEOUT_S = 90
SHUTDOWN_TIMEOUT_S = 20


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    """Poll ``check`` until it is true or ``timeout_s`` passed; returns its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


# ---------------------------------------------------------------------------- the kernel
def ensure_kernel_registered(python: str = sys.executable) -> Path:
    """The kit's kernel spec (what ``make setup`` registers); registered in this environment if missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if KERNEL_NAME not in specs:
        subprocess.run([python, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
                        "--display-name", KERNEL_DISPLAY_NAME], check=True, capture_output=True, text=True,
                       timeout=120)
        specs = KernelSpecManager().find_kernel_specs()
    return Path(specs[KERNEL_NAME])


# ---------------------------------------------------------------------------- the notebooks
def notebook_sequence(folder: Path = ROOT / "notebooks") -> list[Path]:
    """The walkthrough in order: ``notebooks/0*.ipynb``, sorted."""
    return sorted(folder.glob("0*.ipynb"))


def makes_plots(notebook: Path) -> bool:
    """Whether the notebook's code calls something that draws a figure (read from its source)."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
        if PLOT_CALL.search(code):
            return True
    return False


def copy_project_for_lab(home: Path, notebooks: Path = ROOT / "notebooks") -> Path:
    """A copy of ``notebooks`` under ``home`` (so a run never saves outputs into the repo), with the
    repository's ``data/`` linked beside it; returns the notebook folder to serve."""
    target = home / "notebooks"
    shutil.copytree(notebooks, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    if (ROOT / "data").exists() and not (home / "data").exists():
        (home / "data").symlink_to(ROOT / "data")
    return target


def kernel_environment(home: Path, port: int, password: str,
                       base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of JupyterLab and its kernels: the kit rooted at ``home`` (its database on
    ``port``, with ``password`` for the lesson's roles), quick notebooks, nothing inherited that
    would point the kit at another server."""
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith("PG") or key == "DATABASE_URL":
            del env[key]
    env.update({"PGFACTORY_HOME": str(home), "PGFACTORY_PORT": str(port), "PGFACTORY_PASSWORD": password,
                "PGFACTORY_QUICK": "1", "PYTHONUNBUFFERED": "1"})
    return env


# ---------------------------------------------------------------------------- the database
@dataclass
class KitDatabase:
    """The kit's PostgreSQL under ``<home>/.pgfactory``, started with ``pgfactory-kit up``."""

    home: Path
    port: int
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return self.home / ".pgfactory" / "data"

    def up(self) -> None:
        """``pgfactory-kit up`` as a learner runs it (raises with its output when it fails)."""
        kit = [sys.executable, "-m", "pgfactory_kit.cli", "up", "--data-dir", str(self.data_dir),
               "--port", str(self.port)]
        result = subprocess.run(kit, env=self.env, cwd=self.home, capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"`pgfactory-kit up` failed (exit {result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")

    def destroy(self) -> None:
        """Stop the server and delete its data (idempotent)."""
        from pgfactory_kit.servers.postgres import LocalServer

        LocalServer(data_dir=self.data_dir, port=self.port).destroy()


# ---------------------------------------------------------------------------- JupyterLab
def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name: [state, ppid, …, starttime at 19, …]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


# A process is (pid, start time): a PID alone may be reused by another process once ours is gone.
Proc = tuple[int, str]


def _children(pid: int) -> list[Proc]:
    """Every live descendant of ``pid`` (read from /proc)."""
    table: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None and len(fields) > 19:
            table[int(entry.name)] = fields
    found: list[Proc] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, fields in table.items() if fields[1] == str(parent)]
        found.extend((kid, table[kid][19]) for kid in kids)
        frontier.extend(kids)
    return found


def _alive(proc: Proc) -> bool:
    """Still running (not a zombie) and still the same process."""
    fields = _stat(proc[0])
    return fields is not None and len(fields) > 19 and fields[0] != "Z" and fields[19] == proc[1]


def _signal(proc: Proc, sig: int) -> None:
    if _alive(proc):
        try:
            os.kill(proc[0], sig)
        except ProcessLookupError:
            pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@dataclass
class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with a random token, serving ``root_dir``."""

    root_dir: Path
    port: int
    env: dict[str, str]
    state_dir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    process: subprocess.Popen | None = None
    _kernel_procs: set[Proc] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "jupyterlab.log"

    def start(self) -> None:
        """Start ``jupyter lab`` the way ``make lab`` does, without opening a browser; wait until it answers."""
        env = dict(self.env)
        for var, sub in (("JUPYTERLAB_SETTINGS_DIR", "lab-settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config")):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
            env[var] = str(self.state_dir / sub)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root_dir}", f"--MultiKernelManager.default_kernel_name={KERNEL_NAME}",
               "--ServerApp.allow_root=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        log = open(self.log_file, "w", encoding="utf-8")
        try:
            self.process = subprocess.Popen(cmd, env=env, cwd=self.root_dir, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        if not wait_until(self._answers, LAB_START_TIMEOUT_S, 0.5):
            raise RuntimeError(f"JupyterLab did not answer on {self.url} within {LAB_START_TIMEOUT_S} s "
                               f"(exit code {self.process.poll()}); its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]).replace(self.token, "<token>")

    def api(self, method: str, path: str, timeout_s: float = 10) -> object:
        """One call to the Jupyter REST API (JSON answer, or None for an empty one)."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
        return json.loads(body) if body else None

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            return True  # exited: stop waiting, start() reports it
        try:
            self.api("GET", "/api/status", timeout_s=2)
            return True
        except (OSError, urllib.error.URLError, ValueError):
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def remember_kernels(self) -> None:
        """Note the PIDs under JupyterLab (its kernels run in their own sessions, so the process group
        alone would not reach them at shutdown)."""
        if self.running:
            self._kernel_procs.update(_children(self.process.pid))

    def shutdown_kernels(self) -> None:
        """Shut every kernel down through the API (best effort)."""
        if not self.running:
            return
        self.remember_kernels()
        try:
            for kernel in self.api("GET", "/api/kernels") or []:  # type: ignore[union-attr]
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout_s=20)
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def stop(self) -> None:
        """Stop JupyterLab and its kernels: ask politely, then SIGTERM, then SIGKILL, by PID only."""
        if self.process is None:
            return
        self.remember_kernels()
        if self.running:
            try:
                self.api("POST", "/api/shutdown", timeout_s=5)
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if not wait_until(lambda: self.process.poll() is not None, SHUTDOWN_TIMEOUT_S):
                _signal_group(self.process.pid, signal.SIGTERM)
                if not wait_until(lambda: self.process.poll() is not None, 10):
                    _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        leftovers = [proc for proc in self._kernel_procs if _alive(proc)]
        for proc in leftovers:
            _signal(proc, signal.SIGTERM)
        if not wait_until(lambda: not any(_alive(proc) for proc in leftovers), 10):
            for proc in leftovers:
                _signal(proc, signal.SIGKILL)


# ---------------------------------------------------------------------------- Chromium
def launch_chromium(playwright, user_data_dir: Path):  # -> playwright BrowserContext
    """Debian's Chromium, headless, in a fresh profile, with a laptop-sized window; its config,
    cache and crash reports stay in the profile's folder, not in the user's home."""
    home = user_data_dir / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, env=env,
        viewport={"width": 1280, "height": 800}, device_scale_factor=1, locale="en-US",
        timezone_id="UTC")


# ---------------------------------------------------------------------------- a notebook in the browser
# An IPython traceback as JupyterLab 4 renders it: like a stderr stream (same DOM, same mime type),
# so it is told apart by its text; the saved notebook confirms it (output_type "error").
_CELL_STATES_JS = r"""() => {
  const traceback = /Traceback \(most recent call last\)|(^|\n)\s*Cell In\[\d+\], line \d+/;
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  return Array.from(panel.querySelectorAll('.jp-Notebook .jp-Cell.jp-CodeCell')).map(cell => ({
    prompt: (cell.querySelector('.jp-InputArea-prompt')?.textContent || '').trim(),
    tracebacks: Array.from(cell.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
      .map(el => el.textContent || '').filter(text => traceback.test(text)),
    images: Array.from(cell.querySelectorAll('.jp-RenderedImage img'))
      .filter(img => img.complete && img.naturalWidth > 0).length,
  }));
}"""

_IDLE = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]'


@dataclass
class CodeCell:
    """One code cell: its source (from the file), what the browser shows, what the saved file holds."""

    index: int  # among the notebook's code cells, from 1
    source: str
    tags: list[str]
    prompt: str = ""
    tracebacks: list[str] = field(default_factory=list)
    images: int = 0
    saved_errors: list[str] | None = None  # from the saved file; None when it could not be saved

    @property
    def executed(self) -> bool:
        return bool(re.fullmatch(r"\[\d+\]:", self.prompt))

    @property
    def tagged_to_raise(self) -> bool:
        """Tagged ``raises-exception``: the mark JupyterLab honours (Run All goes on past the error)."""
        return "raises-exception" in self.tags

    @property
    def may_raise(self) -> bool:
        """Meant to raise: the tag, or nbval's ``# NBVAL_RAISES_EXCEPTION`` (which JupyterLab ignores)."""
        return self.tagged_to_raise or "NBVAL_RAISES_EXCEPTION" in self.source

    @property
    def first_line(self) -> str:
        lines = [line for line in self.source.splitlines() if line.strip() and not line.startswith("#")]
        return (lines or self.source.splitlines() or [""])[0][:100]

    def where(self) -> str:
        return f"code cell {self.index} ({self.first_line!r})"


@dataclass
class NotebookRun:
    """What a learner's Run All Cells produced for one notebook."""

    name: str
    cells: list[CodeCell]
    finished: bool
    seconds: float
    kernel: str
    notes: list[str] = field(default_factory=list)
    text: str = field(default="", repr=False)  # everything the notebook panel shows, code and outputs

    @property
    def images(self) -> int:
        return sum(cell.images for cell in self.cells)

    def unexpected_errors(self) -> list[str]:
        """What a learner would take for an error, in cells not meant to raise: the cell raised, or
        it printed a traceback on stderr (e.g. a logged exception) though it did not raise."""
        found = []
        for cell in self.cells:
            if cell.may_raise:
                continue
            raised = cell.saved_errors if cell.saved_errors is not None else [
                _last_line(text) for text in cell.tracebacks]
            found.extend(f"{cell.where()} raised {error}" for error in raised)
            logged = [text for text in cell.tracebacks if not any(_last_line(text).startswith(e) for e in raised)]
            if cell.saved_errors is not None and logged:
                found.append(f"{cell.where()} printed a traceback on stderr without raising, ending "
                             f"{_last_line(logged[0])!r}")
        return found

    def not_executed(self) -> list[CodeCell]:
        return [cell for cell in self.cells if not cell.executed]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(empty traceback)"


def _code_cells(notebook: Path) -> list[CodeCell]:
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    code = [c for c in cells if c.get("cell_type") == "code"]
    result = []
    for i, cell in enumerate(code, start=1):
        source = cell.get("source", "")
        result.append(CodeCell(index=i, source="".join(source) if isinstance(source, list) else source,
                               tags=list(cell.get("metadata", {}).get("tags", []))))
    return result


def _complete_notebook(notebook: Path) -> dict | None:
    """The notebook's JSON, or None while a save is still writing it (empty or cut-off file)."""
    try:
        return json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _saved_errors(notebook: Path) -> list[list[str]]:
    """Per code cell, the errors (``ename: evalue``) the saved notebook holds."""
    cells = (_complete_notebook(notebook) or {}).get("cells", [])
    return [[f"{out.get('ename')}: {out.get('evalue')}"[:300] for out in cell.get("outputs", [])
             if out.get("output_type") == "error"]
            for cell in cells if cell.get("cell_type") == "code"]


try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # the test skips without playwright; this module stays importable
    PlaywrightError = RuntimeError  # type: ignore[assignment,misc]


class LabNotebook:
    """Drives one notebook in a JupyterLab page as a learner does: open, Run → Run All Cells, look."""

    def __init__(self, page: Any, lab: JupyterLab, notebook: Path) -> None:
        self.page = page
        self.lab = lab
        self.notebook = notebook  # the served copy: JupyterLab saves into it
        self.notes: list[str] = []
        page.on("pageerror", lambda error: self.notes.append(f"JavaScript error in the page: {error}"))

    def open(self, timeout_s: float = 60) -> None:
        """Open the notebook in a workspace of its own and wait for its kernel to be idle."""
        workspace = re.sub(r"[^A-Za-z0-9_-]", "-", self.notebook.stem)
        self.page.goto(f"{self.lab.url}/lab/workspaces/{workspace}/tree/{self.notebook.name}?token={self.lab.token}",
                       wait_until="domcontentloaded", timeout=timeout_s * 1000)
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout_s * 1000)
        deadline = time.monotonic() + timeout_s
        ready = 0
        while time.monotonic() < deadline:
            self.dismiss_popups()
            # "idle" is shown before a kernel exists ("No Kernel | Initializing"): wait for a named kernel
            has_kernel = self.kernel_name() not in ("No Kernel", "(none shown)", "")
            ready = ready + 1 if has_kernel and self.page.locator(_IDLE).count() else 0
            if ready >= 2:
                return
            self.page.wait_for_timeout(250)
        raise AssertionError(f"{self.notebook.name}: the kernel was not idle {timeout_s:.0f} s after opening "
                             f"(kernel shown: {self.kernel_name()!r}); JupyterLab log:\n{self.lab.log_tail()}")

    def kernel_name(self) -> str:
        name = self.page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) [data-jp-item-name="kernelName"]')
        return name.first.inner_text().strip() if name.count() else "(none shown)"

    def dismiss_popups(self) -> None:
        """Answer what JupyterLab may ask: the news toast (No) and a kernel choice (the kit's kernel)."""
        news = self.page.locator(".jp-toast-button", has_text="No")
        if news.count() and news.first.is_visible():
            try:  # the toast slides in: it may move or go while we click; then the next poll retries
                news.first.click(timeout=3000)
                self.notes.append("answered 'No' to the Jupyter news question")
            except PlaywrightError:
                pass
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count() and dialog.first.is_visible():
            text = dialog.first.inner_text()
            select = dialog.locator(".jp-Dialog-button.jp-mod-accept")
            if "Select Kernel" in text and select.count():
                self.notes.append("JupyterLab asked which kernel to use; accepted its default")
                select.first.click()
            else:
                raise AssertionError(f"{self.notebook.name}: JupyterLab showed a dialog: {text.strip()[:500]}")

    def run_all(self) -> None:
        """Run → Run All Cells, from the menu bar."""
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    def cell_states(self) -> list[dict[str, Any]]:
        return self.page.evaluate(_CELL_STATES_JS) or []

    def wait_until_done(self, timeout_s: float) -> tuple[bool, float]:
        """Wait until no cell is queued or running and the kernel is idle, twice in a row (the run has
        begun once any prompt changed); returns (finished, seconds)."""
        start = time.monotonic()
        calm = 0
        while time.monotonic() - start < timeout_s:
            self.dismiss_popups()
            prompts = [state["prompt"] for state in self.cell_states()]
            began = any(p not in ("", "[ ]:") for p in prompts)
            busy = any(p == "[*]:" for p in prompts)
            calm = calm + 1 if began and not busy and self.page.locator(_IDLE).count() else 0
            if calm >= 2:
                return True, time.monotonic() - start
            self.page.wait_for_timeout(500)
        return False, time.monotonic() - start

    def save(self, timeout_s: float = 20) -> bool:
        """Save through the toolbar's save button; True once the file on disk holds the run.

        The server may write the file in place: a changed mtime can come with a file still being
        written (an empty read was seen), so the save counts once the file also parses whole.
        """
        before = self.notebook.stat().st_mtime_ns
        self.page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) [data-command="docmanager:save"]').first.click()
        return wait_until(lambda: self.notebook.stat().st_mtime_ns != before
                          and _complete_notebook(self.notebook) is not None, timeout_s, 0.2)

    def run(self, timeout_s: float) -> NotebookRun:
        """Open, run all cells, wait, save; what the learner now sees (and the saved file confirms)."""
        cells = _code_cells(self.notebook)
        self.open()
        self.run_all()
        finished, seconds = self.wait_until_done(timeout_s)
        states = self.cell_states()
        if len(states) != len(cells):
            self.notes.append(f"the page shows {len(states)} code cells, the file has {len(cells)}")
        for cell, state in zip(cells, states, strict=False):
            cell.prompt, cell.tracebacks, cell.images = state["prompt"], state["tracebacks"], state["images"]
        if finished and self.save():
            for cell, errors in zip(cells, _saved_errors(self.notebook), strict=False):
                cell.saved_errors = errors
        elif finished:
            self.notes.append("saving the notebook did not change the file; errors judged from the page only")
        text = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.text_content() or ""
        return NotebookRun(self.notebook.name, cells, finished, seconds, self.kernel_name(), self.notes, text)

    def screenshot(self, path: Path, run: NotebookRun) -> Path:
        """The learner's view: scrolled to the first error if any, else to the first plot (with the
        code above it), else where Run All left it (the end of the notebook)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        cells = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell.jp-CodeCell")
        errors = [c.index for c in run.cells if c.tracebacks and not c.may_raise]
        plots = [c.index for c in run.cells if c.images]
        if errors:
            self._bring_into_view(cells.nth(errors[0] - 1).locator(".jp-OutputArea-output").last)
        elif plots:
            self._bring_into_view(cells.nth(plots[0] - 1).locator(".jp-RenderedImage img").first)
        self.page.mouse.move(640, 790)  # off the toolbar, so no tooltip or hover covers the notebook
        self.page.wait_for_timeout(200)
        self.page.screenshot(path=str(path))
        return path

    def _bring_into_view(self, element: Any, tries: int = 8) -> None:
        """Scroll until ``element``'s bottom sits at the bottom of the view and stays there: cells
        above it take their real height only once drawn, which moves it, so a single scroll misses."""
        last = None
        for _ in range(tries):
            element.evaluate("el => el.scrollIntoView({block: 'end'})")
            self.page.wait_for_timeout(250)
            box = element.bounding_box()
            if box is not None and box == last:
                return
            last = box


def write_probe_notebook(path: Path) -> Path:
    """A notebook that shows everything the checks must tell apart: a warning on stderr (fine), a
    plot, a traceback logged on stderr (not fine), an error in a cell tagged ``raises-exception``
    (fine), an error in an untagged cell (not fine) and a cell that Run All therefore never reaches."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    meant = new_code_cell("raise ValueError('shown on purpose')")
    meant.metadata["tags"] = ["raises-exception"]
    notebook = new_notebook(cells=[
        new_markdown_cell("# Probe"),
        new_code_cell("import warnings\nwarnings.warn('a warning is not an error')"),
        new_code_cell("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2, 3], [1, 4, 9])\n"
                      "plt.show()"),
        new_code_cell("import traceback\ntry:\n    {}['missing']\nexcept KeyError:\n    traceback.print_exc()"),
        meant,
        new_code_cell("1 / 0"),
        new_code_cell("never_reached = True"),
    ], metadata={"kernelspec": {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}})
    nbformat.write(notebook, path)
    return path
