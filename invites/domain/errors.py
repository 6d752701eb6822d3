"""Errors the service reports to people: each says what was wrong, and where."""


class InputError(ValueError):
    """Bad input from an organiser or a recipient: a file, a field, a form. The message is for people."""


class TooLarge(InputError):
    """An upload over the configured limit (INVITES_IMPORT_MAX_BYTES)."""


class NotFound(LookupError):
    """The thing asked for does not exist (or may not be told to exist)."""
