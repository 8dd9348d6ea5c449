"""errors.py draws the kit's exception hierarchy in its docstring; the drawing is the truth."""
from __future__ import annotations

import inspect
import re

import psycopg2

from pgfactory_kit import errors

BASES = {"psycopg2.OperationalError": psycopg2.OperationalError, "RuntimeError": RuntimeError}
LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)(?:\s+(?P<base>[\w.]+):)?")


def drawn_tree() -> list[tuple[int, str, str | None]]:
    """(depth, class name, extra base named on the line) for each line of the docstring's tree."""
    block = errors.__doc__.split("::", 1)[1].split("\n\n")[1]
    rows = []
    for line in block.splitlines():
        match = LINE.match(line.strip("\n")[4:])
        assert match, f"unreadable tree line {line!r}"
        rows.append((len(match["indent"]) // 4, match["name"], match["base"]))
    return rows


def test_each_drawn_class_has_the_drawn_parent_and_base():
    parents: list[str] = []
    for depth, name, base in drawn_tree():
        cls = getattr(errors, name)
        parents[depth:] = [name]
        if depth:
            assert issubclass(cls, getattr(errors, parents[depth - 1])), name
        if base:
            assert issubclass(cls, BASES[base]), (name, base)


def test_every_exception_class_in_errors_is_in_the_tree_under_kit_error():
    defined = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__}
    assert defined == {name for _, name, _ in drawn_tree()}
    assert all(issubclass(getattr(errors, name), errors.KitError) for name in defined)


def test_the_pool_errors_stay_operational_errors_and_connect_errors_carry_their_parts():
    assert issubclass(errors.PoolTimeout, psycopg2.OperationalError)
    assert issubclass(errors.PoolClosed, psycopg2.OperationalError)
    err = errors.KitConnectError("could not connect", server_message="refused", tried="tcp", advice="start it")
    assert (str(err), err.server_message, err.tried, err.advice) == ("could not connect", "refused", "tcp", "start it")
