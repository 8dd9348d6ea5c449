"""`make report` runs each notebook in a kernel over IPC: no "running over TCP without encryption" warning
per notebook (on POSIX; Windows keeps TCP)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest

from .conftest import ROOT

pytestmark = pytest.mark.skipif(os.name == "nt", reason="Windows kernels stay on TCP")


def test_headless_notebooks_run_their_kernel_over_ipc_without_the_tcp_warning(tmp_path):
    notebook = tmp_path / "transport.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import json, ipykernel.connect\n"
        "print(json.loads(ipykernel.connect.get_connection_info())['transport'])")]
    nbformat.write(nb, notebook)
    script = ("import sys; from pathlib import Path; from pgfactory_kit.lessons.notebooks import execute\n"
              "run = execute(Path(sys.argv[1]), timeout=120)\n"
              "print(run.error or run.notebook.cells[0].outputs[0]['text'].strip())\n")
    result = subprocess.run([sys.executable, "-c", script, str(notebook)], capture_output=True, text=True,
                            cwd=ROOT, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ipc"
    assert "without encryption" not in result.stderr + result.stdout


def test_the_kernels_socket_folder_is_private_and_removed_at_exit():
    script = ("import os, json; from pgfactory_kit.lessons.kernels import IPCKernelManager, _socket_dir\n"
              "km = IPCKernelManager(kernel_name='python3')\n"
              "print(json.dumps([km.transport, km.ip, oct(os.stat(_socket_dir()).st_mode & 0o777)]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    transport, ip, mode = json.loads(result.stdout)
    assert transport == "ipc" and mode == "0o700"
    assert not os.path.exists(os.path.dirname(ip))
