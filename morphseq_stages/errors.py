"""Errors a user can cause and act on: the CLI prints their message as one line."""


class UserError(Exception):
    """Bad input or a refused action; its message names the file or value at fault."""

    exit_code = 2


class StrictFailure(UserError):
    """A warning that ``--strict`` turned into a failure."""

    exit_code = 3


class PluginError(UserError):
    """A plugin broke the host's contract; the message names it and its distribution."""
