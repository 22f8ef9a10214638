"""Errors about what the user gave us; the command line shows them as one line and exits with 2."""


class InputError(Exception):
    """A file, column, setting or argument that cannot be used. The message names what is wrong."""
