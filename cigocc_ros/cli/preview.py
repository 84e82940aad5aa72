"""`cigocc preview`: one frame of a synthetic (or any SemanticKITTI) sequence as a picture.

The arguments and the drawing still live beside the generator (data/synthetic_preview.py),
which the synthetic-data split owns; this module is the command's place in the table.
"""
from __future__ import annotations

from ..data.synthetic_preview import add_arguments, run

__all__ = ["add_arguments", "run"]
