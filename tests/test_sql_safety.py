"""No string-formatted SQL: values go in as query parameters, identifiers through ``psycopg2.sql``.

The checker reads the package's modules and the notebooks' code cells with ``ast`` and flags, with
file:line, every ``.execute`` / ``.executemany`` / ``.mogrify`` / ``.copy_expert`` call (and every
``sql.SQL(...)``) whose SQL is an f-string with values, ``"..." % x``, ``"...".format(x)``,
``"...".join(xs)`` or a concatenation with non-literals — directly or through a variable assigned so
in the same scope. Literal SQL (the blog's ``"SELECT * FROM mytable"``) and
``sql.SQL("...").format(sql.Identifier(x))`` are fine. A reviewed exception carries the comment
``# sql-safety: allow (<why>)`` on the call's line; the test prints every allowed site.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

EXECUTE_METHODS = {"execute", "executemany", "mogrify", "copy_expert"}
QUERY_KEYWORDS = {"query", "sql", "operation"}
ALLOW_MARKER = "# sql-safety: allow"
MAX_DEPTH = 5  # how many variable hops to follow


@dataclass(frozen=True)
class Finding:
    """One string-formatted SQL site."""

    where: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.reason}"


class _Checker:
    """Walks one module's AST; ``findings`` and ``allowed`` are filled by ``run``."""

    def __init__(self, source: str, where: str) -> None:
        self.tree = ast.parse(source)
        self.lines = source.splitlines()
        self.where = where
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.findings: list[Finding] = []
        self.allowed: list[Finding] = []

    # -------------------------------------------------------------- scopes and variables
    def _scope(self, node: ast.AST) -> ast.AST:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Module)):
                return node
        return node

    def _assigned(self, name: str, at: ast.AST) -> list[tuple[ast.AST, ast.expr, bool]]:
        """(statement, value, is_augmented) for every assignment to ``name`` in ``at``'s scope, else module."""
        found: list[tuple[ast.AST, ast.expr, bool]] = []
        scope = self._scope(at)
        for candidate in (scope, self.tree) if scope is not self.tree else (scope,):
            for node in ast.walk(candidate):
                if isinstance(node, ast.Assign) and any(_binds(t, name) for t in node.targets):
                    found.append((node, node.value, False))
                elif isinstance(node, ast.AnnAssign) and node.value is not None and _binds(node.target, name):
                    found.append((node, node.value, False))
                elif isinstance(node, ast.AugAssign) and _binds(node.target, name):
                    found.append((node, node.value, True))
                elif isinstance(node, ast.NamedExpr) and _binds(node.target, name):
                    found.append((node, node.value, False))
            if found:
                break
        return found

    def _stringy(self, expr: ast.expr, depth: int = 0) -> bool:
        """A str literal or f-string, or a variable only ever assigned one."""
        if isinstance(expr, ast.Constant):
            return isinstance(expr.value, str)
        if isinstance(expr, ast.JoinedStr):
            return True
        if isinstance(expr, ast.Name) and depth < MAX_DEPTH:
            values = self._assigned(expr.id, expr)
            return bool(values) and all(self._stringy(v, depth + 1) for _, v, aug in values if not aug)
        return False

    def _literal(self, expr: ast.expr, depth: int = 0) -> bool:
        """Only string literals (possibly through variables and literal concatenation)."""
        if isinstance(expr, ast.Constant):
            return isinstance(expr.value, str)
        if isinstance(expr, ast.JoinedStr):
            return not any(isinstance(v, ast.FormattedValue) for v in expr.values)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return self._literal(expr.left, depth) and self._literal(expr.right, depth)
        if isinstance(expr, ast.Name) and depth < MAX_DEPTH:
            values = self._assigned(expr.id, expr)
            return bool(values) and all(self._literal(v, depth + 1) for _, v, _aug in values)
        return False

    # -------------------------------------------------------------- the rule
    def unsafe(self, expr: ast.expr, depth: int = 0) -> str | None:
        """Why ``expr`` is string-formatted SQL, or None."""
        if isinstance(expr, ast.NamedExpr):
            return self.unsafe(expr.value, depth)
        if isinstance(expr, ast.JoinedStr):
            return "f-string with values" if any(isinstance(v, ast.FormattedValue) for v in expr.values) else None
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mod) and self._stringy(expr.left, depth):
            return "%-formatted string"
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            leaves = _add_leaves(expr)
            inner = next((r for r in (self.unsafe(leaf, depth) for leaf in leaves) if r), None)
            if inner:
                return inner
            if any(self._stringy(leaf, depth) for leaf in leaves) and not all(self._literal(leaf, depth)
                                                                              for leaf in leaves):
                return "string concatenation with a non-literal"
            return None
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
            if expr.func.attr == "format" and self._stringy(expr.func.value, depth):
                return "str.format() on SQL text"
            if expr.func.attr == "join" and self._stringy(expr.func.value, depth):
                if not all(self._literal(a, depth) for a in _join_items(expr)):
                    return "str.join() of non-literals into SQL text"
        if isinstance(expr, ast.Name) and depth < MAX_DEPTH:
            for stmt, value, augmented in self._assigned(expr.id, expr):
                if augmented and self._stringy(expr, depth) and not self._literal(value, depth + 1):
                    return f"variable {expr.id!r} extended with += at line {stmt.lineno}"
                reason = self.unsafe(value, depth + 1)
                if reason:
                    return f"variable {expr.id!r} is a {reason} (line {stmt.lineno})"
        return None

    def run(self) -> _Checker:
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            query = None
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in EXECUTE_METHODS and isinstance(func, ast.Attribute):
                query = node.args[0] if node.args else next(
                    (k.value for k in node.keywords if k.arg in QUERY_KEYWORDS), None)
            elif name == "SQL":
                query = node.args[0] if node.args else None
            if query is None:
                continue
            reason = self.unsafe(query)
            if reason:
                label = f".{name}()" if name != "SQL" else "sql.SQL()"
                finding = Finding(self.where, node.lineno, f"{label} gets a {reason}")
                span = self.lines[node.lineno - 1:(node.end_lineno or node.lineno)]
                (self.allowed if any(ALLOW_MARKER in line for line in span) else self.findings).append(finding)
        return self


def _binds(target: ast.expr, name: str) -> bool:
    if isinstance(target, ast.Name):
        return target.id == name
    if isinstance(target, (ast.Tuple, ast.List)):
        return any(_binds(t, name) for t in target.elts)
    return False


def _add_leaves(expr: ast.expr) -> list[ast.expr]:
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _add_leaves(expr.left) + _add_leaves(expr.right)
    return [expr]


def _join_items(call: ast.Call) -> list[ast.expr]:
    arg = call.args[0] if call.args else None
    if isinstance(arg, (ast.List, ast.Tuple, ast.Set)):
        return list(arg.elts)
    return [arg] if arg is not None else []


def check_source(source: str, where: str) -> tuple[list[Finding], list[Finding]]:
    """(findings, allowed) for one module's source."""
    checker = _Checker(source, where).run()
    return checker.findings, checker.allowed


def notebook_source(path: Path) -> tuple[str, list[tuple[int, int]]]:
    """The notebook's code cells as one module (cells share a namespace), IPython magics blanked,
    and for each module line the (cell number, line in cell) it came from."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines: list[str] = []
    origin: list[tuple[int, int]] = []
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for offset, line in enumerate(source.splitlines(), start=1):
            stripped = line.lstrip()
            if stripped.startswith(("%", "!")):
                line = line[: len(line) - len(stripped)] + "pass  # IPython magic"
            lines.append(line)
            origin.append((number, offset))
    return "\n".join(lines) + "\n", origin


def check_notebook(path: Path) -> tuple[list[Finding], list[Finding]]:
    source, origin = notebook_source(path)
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    try:
        findings, allowed = check_source(source, str(rel))
    except SyntaxError as exc:
        cell, line = origin[(exc.lineno or 1) - 1] if exc.lineno and exc.lineno <= len(origin) else (0, 0)
        raise AssertionError(f"{rel}: cell {cell} line {line} is not valid Python: {exc.msg}") from None

    def relocate(f: Finding) -> Finding:
        cell, line = origin[f.line - 1]
        return Finding(f"{rel} (cell {cell})", line, f.reason)

    return [relocate(f) for f in findings], [relocate(f) for f in allowed]


def project_files() -> tuple[list[Path], list[Path]]:
    modules = sorted((ROOT / "pgfactory_kit").rglob("*.py"))
    notebooks = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    return modules, notebooks


# ----------------------------------------------------------------------------- the checker's own tests
BAD = {
    "f-string": 'cur.execute(f"SELECT * FROM mytable WHERE name = \'{name}\'")',
    "percent": 'cur.execute("SELECT * FROM mytable WHERE id = %s" % user_id)',
    "percent tuple": 'cur.execute("INSERT INTO t VALUES (%s, %s)" % (a, b))',
    "format": 'cur.execute("SELECT * FROM {} WHERE id = {}".format(table, 1))',
    "concatenation": 'cur.execute("SELECT * FROM mytable WHERE name = \'" + name + "\'")',
    "concat with str()": 'cursor2.execute("DELETE FROM t WHERE id = " + str(n))',
    "executemany": 'cur.executemany(f"INSERT INTO {table} (name) VALUES (%s)", rows)',
    "mogrify": 'cur.mogrify("SELECT %s" % x)',
    "keyword argument": 'cur.execute(query=f"SELECT {x}")',
    "via variable": 'q = f"SELECT * FROM {table}"\ncur.execute(q)',
    "via two variables": 'base = "SELECT * FROM t WHERE x = "\nq = base + value\ncur.execute(q)',
    "augmented": 'q = "SELECT * FROM t"\nq += " WHERE id = " + str(i)\ncur.execute(q)',
    "format on variable": 'template = "SELECT * FROM {}"\ncur.execute(template.format(t))',
    "in a function": 'def f(cur, t):\n    stmt = "DROP TABLE %s" % t\n    cur.execute(stmt)',
    "str.join": 'cur.execute(" ".join(["SELECT", col, "FROM t"]))',
    "sql.SQL from f-string": 'cur.execute(sql.SQL(f"SELECT {col} FROM t"))',
    "SQL from format": 'q = SQL("SELECT * FROM {}".format(t))',
    "copy_expert": 'cur.copy_expert(f"COPY {t} TO STDOUT", f)',
    "walrus": 'cur.execute(q := f"SELECT {x}")',
}

GOOD = {
    "literal": 'cur.execute("SELECT * FROM mytable")',
    "the blog's insert": 'cursor2.execute("INSERT INTO mytable (name) VALUES (\'John\')")',
    "parameters": 'cur.execute("SELECT * FROM mytable WHERE name = %s", (name,))',
    "named parameters": 'cur.execute("SELECT %(a)s", {"a": 1})',
    "sql.SQL format": 'cur.execute(sql.SQL("SELECT * FROM {} WHERE id = %s").format(sql.Identifier(t)), (1,))',
    "sql.SQL join": 'cur.execute(sql.SQL(", ").join(sql.Identifier(c) for c in cols))',
    "composed +": 'cur.execute(sql.SQL("SELECT ") + sql.Identifier(c))',
    "literal concatenation": 'cur.execute("SELECT * " + "FROM mytable")',
    "literal variable": 'q = "SELECT 1"\ncur.execute(q)',
    "concatenation of literal variables": 'table = "mytable"\ncur.execute("SELECT * FROM " + table)',
    "f-string without values": 'cur.execute(f"SELECT 1")',
    "variable from a file": 'cur.execute(script.read_text())',
    "composed variable format": 'q = sql.SQL("SELECT * FROM {}")\ncur.execute(q.format(sql.Identifier(t)))',
    "other method named format": 'cur.execute(q, fmt.format(x))',
    "not SQL": 'print(f"{n} rows")\nlogger.info("x %s" % y)',
    "allowed with a reason": 'cur.execute(f"SHOW {w}")  # sql-safety: allow (w is checked against a list)',
    "percent in parameters": 'cur.execute("SELECT %s", ("%d" % n,))',
}


@pytest.mark.parametrize("snippet", BAD.values(), ids=BAD.keys())
def test_checker_flags_string_formatted_sql(snippet):
    findings, _ = check_source(snippet, "<snippet>")
    assert len(findings) == 1, findings
    last_line = len(snippet.splitlines())
    assert findings[0].line == last_line and str(findings[0]).startswith(f"<snippet>:{last_line}: ")


@pytest.mark.parametrize("snippet", GOOD.values(), ids=GOOD.keys())
def test_checker_accepts_parameters_literals_and_psycopg2_sql(snippet):
    findings, _ = check_source(snippet, "<snippet>")
    assert findings == []


def test_checker_reports_allowed_sites_separately():
    findings, allowed = check_source(GOOD["allowed with a reason"], "<snippet>")
    assert findings == [] and len(allowed) == 1


def test_checker_maps_notebook_findings_to_cells(tmp_path):
    notebook = {"cells": [
        {"cell_type": "markdown", "source": ["# title"]},
        {"cell_type": "code", "source": ["%load_ext autoreload\n", "table = input()\n"]},
        {"cell_type": "code", "source": "!ls\nx = 1\ncur.execute('SELECT * FROM ' + table)"},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook))
    findings, _ = check_notebook(path)
    assert [(f.where.endswith("(cell 3)"), f.line) for f in findings] == [(True, 3)]


# ----------------------------------------------------------------------------- the project
def test_package_and_notebooks_pass_values_as_parameters():
    modules, notebooks = project_files()
    assert modules, "no package modules found"
    findings: list[Finding] = []
    allowed: list[Finding] = []
    for path in modules:
        found, ok = check_source(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
        findings += found
        allowed += ok
    for path in notebooks:
        found, ok = check_notebook(path)
        findings += found
        allowed += ok
    for site in allowed:
        print(f"allowed: {site}")
    assert not findings, ("string-formatted SQL (pass values as parameters, identifiers with "
                          "psycopg2.sql):\n" + "\n".join(map(str, findings)))
