"""The one-line failures of `neuface-process-data` (bad input: no traceback, exit status 1)."""

from __future__ import annotations

from typing import Sequence

from neuface_ns.errors import NeuFaceInputError


def name_list(names: Sequence[str], limit: int = 8) -> str:
    """'a.jpg, b.jpg, ... (12 in all)' for one-line messages."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class CaptureError(NeuFaceInputError):
    """Bad capture input: `neuface-ns: <path>: <problem and what to do>` on one line."""
