"""One family of exceptions for mistakes a user can fix: the CLI prints their message alone."""


class GlassboxError(Exception):
    """A bad input or state, explained in one line; no traceback needed."""
