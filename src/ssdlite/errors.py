"""Errors the user can act on.

`UserError` carries a message that names the file and the problem; the CLI prints it without a
traceback. Library code raises it (or a subclass) for bad input instead of letting a deep
exception escape.
"""


class UserError(Exception):
    """Bad input or configuration; the message says which file and what is wrong."""


class DataError(UserError, ValueError):
    """A dataset file or annotation cannot be used."""


class ConfigError(UserError, ValueError):
    """A configuration file, flag or setting has an unknown key, a wrong type or a value outside its choices."""
