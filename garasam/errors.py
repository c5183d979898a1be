"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class GarasamError(Exception):
    """Base class for errors caused by user input (files, configs, arguments)."""


class CheckpointError(GarasamError):
    """A SAM checkpoint or adapter folder cannot be loaded."""


class DataError(GarasamError):
    """A dataset, image or mask is missing, unreadable or inconsistent."""


class ConfigError(GarasamError):
    """A configuration has an unknown key, a wrong type or an invalid value."""


class WriteError(GarasamError):
    """The disk refused a write (full, read-only, no permission): named with the path and the cause."""


class BusyError(GarasamError):
    """An output folder is being written by another live garasam process."""
