"""`campaign demo`'s whole loop in process, on this test's database: the sample loaded with its
reminder, the engine's answers and keypresses served over loopback to the simulator, busy and
unanswered calls redialled, opt-outs on the list `default`, and the summary read back."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest

from campaign.config import Settings
from campaign.demo import (
    DEMO_GATHER_PROMPT,
    DEMO_MAX_ATTEMPTS,
    DEMO_ROWS,
    DemoResult,
    describe_answers,
    run_demo,
    write_sample_csv,
)
from campaign.destinations import InvalidDestination, Rejected, read_destination
from campaign.importer import CsvSource
from campaign.models import Schedule

pytestmark = pytest.mark.slow


@dataclass
class Recorder:
    """A LoadObserver that keeps the rejected rows."""

    rejects: list[Rejected] = field(default_factory=list)

    def rejected(self, row: Rejected) -> None:
        self.rejects.append(row)

    def progressed(self, bytes_read: int) -> None:
        pass


async def demo(settings: Settings, path: Path, name: str) -> DemoResult:
    """Run the demo on `path` around the clock (so that every callee is dialled now)."""
    source = CsvSource(path)
    try:
        return await run_demo(settings, source, name, Recorder(), Schedule())
    finally:
        source.close()


def sample(path: Path) -> dict[str, dict[str, str]]:
    """Write the default sample; its rows by destination (the first of a duplicate)."""
    write_sample_csv(path, DEMO_ROWS, first_day=date(2026, 12, 3))
    rows: dict[str, dict[str, str]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                destination, _zones = read_destination(row["phone"], "US")
            except InvalidDestination:
                continue
            rows.setdefault(destination, row)
    return rows


async def test_the_demo_reminds_records_keys_redials_and_suppresses(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Every callee is dialled; the keys pressed are in `responses` (confirmations,
    cancellations and opt-outs, as campaign_progress counts them); each opt-out is on the list
    `default` naming the campaign, and the result lists exactly those numbers; a busy or
    unanswered call is dialled again (the redial delay later, at most DEMO_MAX_ATTEMPTS calls
    in all), as the result counts; and the example callee heard their own first name and
    appointment, then the menu and what their key says after it."""
    rows = sample(tmp_path / "sample.csv")
    result = await demo(settings, tmp_path / "sample.csv", "demo")
    assert (result.load.loaded, result.load.suppressed, result.dialled) == (40, 0, 40)
    assert result.progress.status == "completed"
    assert result.progress.counts["fired"] == 40

    responses = {
        row["meaning"]: row["count"]
        for row in await pool.fetch("SELECT meaning, count(*) FROM responses GROUP BY meaning")
    }
    assert responses == result.progress.responses
    assert min(responses.get(m, 0) for m in ("confirmed", "cancelled", "opt-out")) >= 1

    opted_out = await pool.fetch(
        "SELECT c.destination FROM responses r JOIN contacts c ON c.id = r.contact_id"
        " WHERE r.meaning = 'opt-out' ORDER BY 1"
    )
    suppressed = await pool.fetch(
        "SELECT destination, reason FROM suppressions WHERE list = 'default' ORDER BY 1"
    )
    assert [row["destination"] for row in suppressed] == [row[0] for row in opted_out]
    assert all("on a call of campaign demo" in row["reason"] for row in suppressed)
    assert [o.destination for o in result.opt_outs] == [row[0] for row in opted_out]

    attempts = await pool.fetch(
        "SELECT a.contact_id, a.attempt, a.call_status, a.sent_at, a.hangup_received_at"
        " FROM dial_attempts a ORDER BY a.contact_id, a.attempt"
    )
    by_contact: dict[int, list[asyncpg.Record]] = {}
    for attempt in attempts:
        by_contact.setdefault(attempt["contact_id"], []).append(attempt)
    redialled = {key: calls for key, calls in by_contact.items() if len(calls) > 1}
    assert redialled
    assert result.redials.contacts == len(redialled)
    assert result.redials.calls == sum(len(calls) - 1 for calls in redialled.values())
    for calls in redialled.values():
        assert len(calls) <= DEMO_MAX_ATTEMPTS
        for earlier, later in itertools.pairwise(calls):
            assert earlier["call_status"] in ("busy", "no-answer")
            assert later["sent_at"] - earlier["hangup_received_at"] >= timedelta(seconds=1.9)
    assert set(result.redials.by_call_status) <= {"busy", "no-answer"}

    example = result.example
    assert example is not None
    row = rows[example.destination]
    assert example.text == (
        f"Hello {row['first_name']}, your appointment is on {row['appointment']}. "
        f"{DEMO_GATHER_PROMPT} Thank you, see you then."
    )
    assert example.digits == ("1",)
    lines = describe_answers(result)
    assert lines[0].startswith("responses: ")
    assert "opt-out" in lines[0]
    assert lines[1].startswith(f"redialled {len(redialled)} callees")
    assert ", ".join(o.destination for o in result.opt_outs) in lines[2]
    assert lines[-1].startswith(f'{example.destination} heard: "Hello {row["first_name"]},')


async def test_a_second_demo_does_not_call_the_first_ones_opt_outs(
    settings: Settings, tmp_path: Path
) -> None:
    """Run again on the same database, the demo loads the same sample, but the numbers whose
    callees opted out the first time are suppressed at load and never dialled; the summary
    says so."""
    sample(tmp_path / "sample.csv")
    first = await demo(settings, tmp_path / "sample.csv", "first")
    assert first.opt_outs
    second = await demo(settings, tmp_path / "sample.csv", "second")
    assert second.load.suppressed == len(first.opt_outs)
    assert second.dialled == 40 - len(first.opt_outs)
    assert second.progress.counts["suppressed"] == len(first.opt_outs)
    assert not {o.destination for o in first.opt_outs} & {o.destination for o in second.opt_outs}
    assert any(
        line.startswith(f"{len(first.opt_outs)} callees were not called: on a suppression list")
        for line in describe_answers(second)
    )
