"""Errors caused by what a user gave us: the CLI prints them without a traceback."""


class UserError(ValueError):
    """Bad input from a user (a file, key or value): the message says what and what was expected."""
