"""Progress bars for the exporter's long loops (SDF grid, colour rays)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nerfstudio.utils.rich_utils import CONSOLE


def progress_bar(enabled: bool = True) -> Progress:
    """A rich progress bar on nerfstudio's console, one line per task (its own description, done / total,
    elapsed, remaining); `enabled=False` gives rich's disabled bar, which shows nothing.

    nerfstudio's `get_progress` is not used: it fixes one description for the whole bar and shows no
    done / total count, while the exporter runs several tasks on one bar ("SDF coarse grid", "SDF near
    surface").
    """
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=CONSOLE,
        transient=False,
        disable=not enabled,
    )
