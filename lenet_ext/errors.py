"""The error a command-line tool reports as one line (`error: ...`, exit 1) instead of a traceback:
bad input, files or environment. Every module's own error type derives from it."""


class UserError(Exception):
    """A problem with the user's input, files or environment, stated in one line."""
