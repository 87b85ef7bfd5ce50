"""The one family of errors shapekit raises for bad input."""

from __future__ import annotations

import os


class ShapekitError(ValueError):
    """Bad input to shapekit: the message says what was wrong and what was expected."""


class FormatError(ShapekitError):
    """A file that does not parse, naming the file and (when known) the line."""

    def __init__(self, path, message, line=None):
        self.path = os.fspath(path) if path is not None else None
        self.line = line
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")
