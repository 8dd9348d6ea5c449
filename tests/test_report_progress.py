"""The report's pages show results, not progress bars: the kernels it starts run with tqdm disabled,
while the report's own bar over the notebooks stays in the terminal."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pgfactory_kit.lessons.report import kernel_environment

PROGRESS_LOOP = "from tqdm.auto import tqdm\nfor _ in tqdm(range(50)):\n    pass\nprint('done')\n"


def test_report_kernels_get_tqdm_disabled_in_full_and_quick_mode(tmp_path: Path) -> None:
    for quick in (False, True):
        assert kernel_environment(tmp_path, quick)["TQDM_DISABLE"] == "1"


def test_a_progress_bar_under_the_report_environment_writes_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in kernel_environment(tmp_path, quick=False).items() if not k.startswith("PG")}
    result = subprocess.run([sys.executable, "-c", PROGRESS_LOOP], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == "done\n"
    assert result.stderr == "", result.stderr


def test_without_it_the_same_loop_draws_a_bar(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "TQDM_"))}
    result = subprocess.run([sys.executable, "-c", PROGRESS_LOOP], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert "50/50" in result.stderr, "the control: a plain run shows the bar on stderr"
