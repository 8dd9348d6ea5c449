"""Checker for notebook 00 (setup): read one server setting yourself."""
from __future__ import annotations

from typing import Any

from ...settings import ConnectionSettings
from ..lesson import server_view
from . import Verdict, check, not_attempted, passed, todo


def check_max_connections(answer: Any, settings: ConnectionSettings) -> Verdict:
    """The answer must be the server's ``max_connections`` as an int."""
    if not_attempted(answer):
        return todo("max_connections", "replace `...` with the server's max_connections, as an int "
                                       "(run `SHOW max_connections` on a connection).")
    actual = int(server_view(settings).query("SHOW max_connections")[0][0])
    check(isinstance(answer, int) and not isinstance(answer, bool), expected="an int", seen=answer,
          hint="SHOW returns text: convert it with int(...).")
    check(answer == actual, expected=f"the server's max_connections ({actual})", seen=answer,
          hint="run SHOW max_connections on a connection from create_connection() and fetch the one row.")
    return passed("max_connections", f"At most {actual} sessions at once: notebook 06 runs into this limit.")
