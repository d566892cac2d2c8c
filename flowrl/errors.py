"""Errors and warnings about what a user gave us, which the CLI prints without a traceback."""


class UserError(ValueError):
    """Bad input from a user (a file, key or value): the message says what and what was expected."""


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """A UserError naming `key` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise UserError(f"{key}={value!r}: expected one of {', '.join(allowed)}")


class DataWarning(UserWarning):
    """Data that is usable but probably not what the user meant (e.g. actions out of range)."""


class Interrupted(Exception):
    """Training stopped on a signal after saving; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
