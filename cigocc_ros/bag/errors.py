"""BagError: a bag the bag tools cannot read, or cannot write where asked."""
from __future__ import annotations

from ..errors import CigoccError


class BagError(CigoccError, ValueError):
    """A missing, unreadable or damaged bag beyond what can be recovered; the message starts
    with the bag or file it is about. A ValueError too, like the bag tools' other input
    errors, so callers that catch those keep working."""
