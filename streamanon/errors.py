"""Errors the CLI turns into one-line messages and a non-zero exit."""


class StreamanonError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 1


class InputError(StreamanonError, ValueError):
    """The input is missing, unreadable, or not something we can anonymize."""

    exit_code = 2


class OutputError(StreamanonError, RuntimeError):
    """The output cannot be written (permissions, existing file, bad codec)."""

    exit_code = 3


class ModelMissingError(StreamanonError, RuntimeError):
    """An optional backend's model file is not on this machine (we never download)."""

    exit_code = 4


class MissingExtraError(StreamanonError, ImportError):
    """An optional Python dependency (an extra such as ``streamanon[torch]``) is not installed."""

    exit_code = 4
