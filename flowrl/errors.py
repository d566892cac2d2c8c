"""Errors and warnings about what a user gave us, which the CLI prints without a traceback."""

import dataclasses
import functools
import numbers
import os
import sys
import types
import typing
import warnings
from collections.abc import Callable

# A name becomes a folder or file name with suffixes (`.NAME.PID.tmp`, `.NAME.tmp-XXXXXXXX`):
# 200 bytes leave room for them under the 255 of common file systems.
MAX_NAME_BYTES = 200


class UserError(ValueError):
    """Bad input from a user (a file, key or value): the message says what and what was expected."""


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """A UserError naming `key` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise UserError(f"{key}={value!r}: expected one of {', '.join(allowed)}")


def check_name(value: str, what: str) -> str:
    """`value` if it names one folder or file in place: a UserError naming `what` (the
    setting, e.g. `name` or `--name`) and the value otherwise. The one check of every name
    flowrl makes a path of: run names, sweep names, the parts of a dataset id.

    A plain name: not empty, no path separator (`/`, `\\`), no leading `.` (so not `.` or
    `..`, and nothing hidden), printable characters only, at most MAX_NAME_BYTES in UTF-8."""
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    problem = None
    if not isinstance(value, str) or not value:
        problem = "it is empty" if value == "" else "not a string"
    elif any(sep in value for sep in separators):
        problem = "it holds a path separator"
    elif value.startswith("."):
        problem = "it starts with '.'"
    elif not value.isprintable():
        problem = "it holds a character that does not print"
    elif len(value.encode()) > MAX_NAME_BYTES:
        problem = f"longer than {MAX_NAME_BYTES} bytes"
    if problem is not None:
        shown = value if len(str(value)) <= 120 else f"{value[:80]}...{value[-20:]}"
        raise UserError(
            f"{what} {shown!r}: expected a plain folder name (no '/', no leading '.', "
            f"printable, at most {MAX_NAME_BYTES} bytes): {problem}"
        )
    return value


def check_types(section: object, prefix: str = "") -> None:
    """A UserError naming the first field of the dataclass `section` (or of a dataclass in
    it) whose value is not of its annotated type: an `int` is an integer and not a bool, a
    `float` a real number and not a bool, a `bool` True or False, a `str` a string, a
    `list[float]` a list of such numbers. Other annotations are not checked here."""
    hints = _type_hints(type(section))
    for field in dataclasses.fields(section):
        key, value = f"{prefix}{field.name}", getattr(section, field.name)
        if dataclasses.is_dataclass(value):
            check_types(value, f"{key}.")
        elif (expected := _mismatch(hints.get(field.name), value)) is not None:
            raise UserError(f"{key}={value!r}: expected {expected}")


@functools.cache
def _type_hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _mismatch(hint: object, value: object) -> str | None:
    """What `hint` expects, if `value` is not of it; None if it is (or `hint` is not checked)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        others = [arg for arg in args if arg is not type(None)]
        if (value is None and len(others) < len(args)) or len(others) != 1:
            return None
        return _mismatch(others[0], value)
    if origin is list and args and args[0] in _PLURAL:
        ok = isinstance(value, (list, tuple)) and not any(_mismatch(args[0], v) for v in value)
        return None if ok else f"a list of {_PLURAL[args[0]]}"
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    else:
        return None
    return None if ok else _EXPECTED[hint]


class DataWarning(UserWarning):
    """Data that is usable but probably not what the user meant (e.g. actions out of range)."""


class RenamedWarning(FutureWarning):
    """A name the user gave that was renamed: it still works, under its new name, for now."""


def renamed(name: str, renames: dict[str, str], what: str) -> str:
    """`name`, or its new name with a RenamedWarning when `renames` holds it as an old one."""
    if name not in renames:
        return name
    warnings.warn(
        f"{what} {name!r} is now called {renames[name]!r}; the old name will be removed",
        RenamedWarning,
        stacklevel=3,
    )
    return renames[name]


class Interrupted(Exception):
    """Training stopped on a signal after saving; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


PYTHON_SHOWWARNING = warnings.showwarning  # kept for warnings that are not flowrl's


def show_warnings_in_one_line(prog: str) -> None:
    """flowrl's own warnings print as `prog: warning: message`, without a source line."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (DataWarning, RenamedWarning)):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def exit_status(call: Callable[[], int | None], prog: str) -> int:
    """Runs `call` and returns the process's exit status: its own (None: 0), 2 for a
    UserError, 128 + the signal for a run that saved and stopped on one (`Interrupted`),
    130 for a KeyboardInterrupt; each of those is one line `prog: ...` on stderr."""
    try:
        return int(call() or 0)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:  # training saved itself after SIGINT/SIGTERM
        print(f"{prog}: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
