"""What the commands show on a terminal: load progress, rejected rows, campaign tables."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TimeRemainingColumn
from rich.table import Table

from campaign.destinations import Rejected
from campaign.importer import open_rejects_file
from campaign.models import CONTACT_STATUSES
from campaign.models import Progress as CampaignProgress

# The calls' outcomes, after the counts by status ("call failed": a call that failed, unlike the
# `failed` contacts whose request was refused).
OUTCOME_HEADERS = ("answered", "busy", "no-answer", "call failed", "timeout", "answer rate")


class LoadReporter:
    """Shows a progress bar on a terminal, prints each rejected row, writes the rejects file."""

    def __init__(
        self, total_bytes: int, rejects_path: Path | None, *, escape_formulas: bool = True
    ) -> None:
        self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        self._rejects_path = rejects_path
        self._escape_formulas = escape_formulas
        self._rejects_file: IO[str] | None = None
        self._write_reject: Callable[[Rejected], None] | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total_bytes = total_bytes

    def __enter__(self) -> LoadReporter:
        if self._rejects_path is not None:
            self._rejects_file, self._write_reject = open_rejects_file(
                self._rejects_path, escape_formulas=self._escape_formulas
            )
        if self._console.is_terminal:
            self._progress = Progress(
                "loading",
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("load", total=self._total_bytes)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._rejects_file is not None:
            self._rejects_file.close()

    def rejected(self, row: Rejected) -> None:
        line = f"line {row.line_number}: {row.raw_value!r} rejected: {row.reason}"
        if self._progress is None:
            # Not a terminal: written as it is (rich took 150 µs a line, a load's 10,000
            # rejected rows 1.5 s of the loader's one process).
            self._console.file.write(line + "\n")
        else:
            # Above the progress bar, plainly (no markup): the raw value is the user's data.
            self._console.print(line, markup=False)
        if self._write_reject is not None:
            self._write_reject(row)

    def progressed(self, bytes_read: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=bytes_read)


def print_progress_table(rows: Sequence[CampaignProgress], out: IO[str] | None = None) -> None:
    """A table of campaigns with their contacts' counts by status and their calls' outcomes."""
    console = Console(file=out or sys.stdout, highlight=False)
    if not console.is_terminal:
        # Piped or captured output is read whole, not cut to an 80-column guess.
        console.width = 200
    table = Table(box=None, pad_edge=False)
    table.add_column("id", justify="right")
    table.add_column("campaign")
    table.add_column("status")
    table.add_column("total", justify="right")
    for status in CONTACT_STATUSES:
        table.add_column(status, justify="right")
    for outcome in OUTCOME_HEADERS:
        table.add_column(outcome, justify="right")
    for row in rows:
        table.add_row(
            str(row.campaign_id),
            row.campaign,
            row.status.value,
            str(row.total),
            *(str(row.counts[status]) for status in CONTACT_STATUSES),
            str(row.answered),
            str(row.busy),
            str(row.no_answer),
            str(row.call_failed),
            str(row.timeout),
            "-" if row.answer_rate is None else f"{row.answer_rate:.1%}",
        )
    console.print(table)
