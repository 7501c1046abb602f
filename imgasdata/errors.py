"""The package's exceptions for mistakes a user can fix.

Everything a user causes (an unreadable image, a bad setting, a folder in the
wrong layout, a weights file that is not what it claims to be) raises a
:class:`UserError`. The command line turns these into one sentence and exit
status 2; every other exception is a bug or a resource problem (out of memory, a
crashed library) and keeps its traceback.

The subclasses also derive from the built-in exception that fits, so code that
catches ``ValueError`` or ``FileNotFoundError`` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or settings; the message says what and how to fix it."""


class SettingsError(UserError, ValueError):
    """A setting has a value that is not allowed."""


class DataError(UserError, ValueError):
    """A data folder, CSV or table is not in a layout or shape the function can read."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class WeightsError(UserError, ValueError):
    """A weights file is not valid, or would need unpickling (refused: it could run code)."""


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""


def require(module, extra, what=None):
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install "imgasdata[extra]"``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        for_what = f" for {what}" if what else ""
        raise MissingExtraError(
            f"The package {module.split('.')[0]!r} is needed{for_what} but is not installed; "
            f'install it with: pip install "imgasdata[{extra}]"'
        ) from None
