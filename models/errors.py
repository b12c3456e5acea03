"""User-facing errors: the CLI prints these as one line, without a traceback."""


class GadflowError(Exception):
    """A problem with the user's input, config or files, explained in one line."""
