"""Checkers for the notebooks' challenge cells: one module per notebook (``nb01.py`` …).

The convention: a challenge cell starts with ``...`` (Ellipsis) where the learner's answer goes,
and ends with a call to the notebook's checker, e.g. ``nb01.check_two_sessions(answer)``.
- Not attempted yet (the answer is still ``...``): the checker prints what to do; its Verdict is false,
  so the learner's notebook still runs top to bottom (CI runs it too).
- Attempted and right: prints "Challenge passed"; its Verdict is true (solutions ``assert`` it).
- Attempted and wrong: raises ``ExerciseFailed`` saying what was expected, what was seen, and a hint.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ExerciseFailed", "Verdict", "check", "check_equal", "not_attempted", "passed", "todo"]


class Verdict:
    """What a checker returns: true when the challenge passed. It has already printed its message,
    so a notebook shows nothing more for it (no stray ``False`` under a not-yet-attempted cell)."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self) -> None:
        pass


class ExerciseFailed(AssertionError):
    """A challenge answer that is not right yet; the message says expected / seen / hint."""


def not_attempted(*answers: Any) -> bool:
    """True when any answer is still the placeholder ``...``."""
    return any(answer is Ellipsis for answer in answers)


def todo(challenge: str, what_to_do: str) -> Verdict:
    """Tell the learner the challenge is waiting for them; the verdict is false (not passed, not failed)."""
    print(f"✎ Challenge '{challenge}' is not attempted yet: {what_to_do}")
    return Verdict(False)


def check(condition: bool, *, expected: str, seen: Any, hint: str) -> None:
    """Raise ExerciseFailed with a helpful message unless ``condition`` holds."""
    if not condition:
        raise ExerciseFailed(f"\n  expected: {expected}\n  seen:     {_short(seen)}\n  hint:     {hint}")


def check_equal(seen: Any, expected: Any, *, what: str, hint: str) -> None:
    """Raise ExerciseFailed unless ``seen == expected``; ``what`` names the value checked."""
    check(seen == expected, expected=f"{what} == {_short(expected)}", seen=seen, hint=hint)


def passed(challenge: str, why: str = "") -> Verdict:
    """Say the challenge passed (and what that shows); the verdict is true."""
    print(f"✔ Challenge '{challenge}' passed." + (f" {why}" if why else ""))
    return Verdict(True)


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
