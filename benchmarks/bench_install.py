"""How long installing the kit takes, the way a learner, a hub image or Binder does it; recorded in RESULTS.md.

    python benchmarks/bench_install.py            # wheel size, pip install of the wheel into a fresh venv, up
    python benchmarks/bench_install.py --clone    # also: fresh clone -> first plot of `make report --quick`,
                                                  # and -> a running JupyterLab (`make setup` + `make up` + lab)

pip's cache is whatever this machine has (warm after `make setup`): the numbers are for a second install,
what a room of laptops behind one proxy or a rebuilt image sees. No timing is asserted anywhere.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import replace_block  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAB_WAIT_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in ("VIRTUAL_ENV", "DATABASE_URL")}
    env.update(extra)
    return env


def _timed(cmd: list[str], **kwargs) -> float:
    started = time.monotonic()
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kwargs)
    return time.monotonic() - started


def measure_wheel(work: Path) -> dict[str, float]:
    """Build the wheel, pip install it (with its dependencies) into a new venv, start the server from it."""
    out: dict[str, float] = {}
    out["wheel build (s)"] = _timed([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist",
                                     ROOT])
    (wheel,) = (work / "dist").glob("pgfactory_kit-*.whl")
    out["wheel size (kB)"] = wheel.stat().st_size / 1000
    out["venv creation (s)"] = _timed([sys.executable, "-m", "venv", work / "venv"])
    python = work / "venv" / "bin" / "python"
    out["pip install wheel + deps (s)"] = _timed([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                                  wheel], env=_env())
    folder = work / "empty"
    folder.mkdir()
    env = _env(PGFACTORY_PORT=str(_free_port()))
    kit = work / "venv" / "bin" / "pgfactory-kit"
    try:
        out["first `pgfactory-kit up` (s)"] = _timed([kit, "up"], cwd=folder, env=env)
    finally:
        subprocess.run([kit, "down"], cwd=folder, env=env, capture_output=True, check=False)
    out["venv size (MB)"] = sum(p.stat().st_size for p in (work / "venv").rglob("*") if p.is_file()) / 1e6
    return out


def measure_clone(work: Path) -> dict[str, float]:
    """git clone, then `make report REPORT_ARGS=--quick` (setup included) and `make lab` until it answers."""
    out: dict[str, float] = {}
    started = time.time()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "clone")], check=True)
    clone = work / "clone"
    env = _env(PGFACTORY_PORT=str(_free_port()))
    try:
        subprocess.run(["make", "report", "REPORT_ARGS=--quick"], cwd=clone, env=env, check=True, capture_output=True)
        finished = time.time()
        out["clone -> make setup done (s)"] = (clone / ".venv" / ".installed").stat().st_mtime - started
        pngs = sorted(p.stat().st_mtime for p in (clone / "report").rglob("*.png"))
        out["clone -> first plot in report/ (s)"] = pngs[0] - started
        out["clone -> whole quick report (s)"] = finished - started
        port = _free_port()
        lab_started = time.monotonic()
        lab = subprocess.Popen(["make", "lab"], cwd=clone, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**env, "JUPYTER_PORT": str(port)}, start_new_session=True)
        try:
            deadline = time.monotonic() + LAB_WAIT_S
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=2):
                        break
                except OSError:
                    time.sleep(0.25)
            out["`make lab` after setup -> JupyterLab answers (s)"] = time.monotonic() - lab_started
        finally:
            os.killpg(lab.pid, 15)
            lab.wait(timeout=30)
        out["clone -> running JupyterLab (s)"] = (out["clone -> make setup done (s)"]
                                                  + out["`make lab` after setup -> JupyterLab answers (s)"])
    finally:
        subprocess.run(["make", "down"], cwd=clone, env=env, capture_output=True, check=False)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clone", action="store_true", help="also time a fresh clone to a plot and to JupyterLab")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    # A folder the server's user can reach (0755): as root a private one would relocate the server's binaries
    # and cluster to /var/lib/pgfactory-kit, which outlives this folder.
    work = Path(tempfile.mkdtemp(prefix="pgfactory-install-bench-"))
    os.chmod(work, 0o755)
    try:
        numbers = measure_wheel(work)
        if args.clone:
            numbers |= measure_clone(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = "\n".join(f"| {name} | {value:,.1f} |" for name, value in numbers.items())
    cmd = "python benchmarks/bench_install.py" + (" --clone" if args.clone else "")
    body = (f"`{cmd}` on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, pip's cache warm:\n\n"
            f"| step | value |\n|---|---:|\n{rows}")
    print(body)
    if not args.no_write:
        replace_block("install", "## Install", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
