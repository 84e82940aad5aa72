"""The project's own error: a file or an argument the user gave that cannot be used (a cut or
corrupt image, bag, scan, calibration, checkpoint, config). Every `cigocc` command prints one
as a single line, `error: <file>: <problem>`, and exits with status 2 (cli/main.py); any other
exception is a bug and keeps its traceback.

The error classes of the modules (DataFormatError, CheckpointError, ConfigError, BagError, ...)
derive from it, so the command line needs to know only this one."""
from __future__ import annotations


class CigoccError(Exception):
    """A bad input file or argument; the message starts with the file it is about."""
