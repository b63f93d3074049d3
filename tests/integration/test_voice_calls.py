"""What the call says and what the callee answers, end to end: a real worker dials the
simulator, which fetches the engine's answer XML (signed), plays it, presses keys and posts
them (signed) to the engine, whose answers and responses land in SQL."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
from plivo_fixtures import AUTH_TOKEN, client_config
from web_fixtures import rig
from worker_fixtures import FROM, wait_for, worker_config

from campaign import queries
from campaign.models import CampaignSpec
from campaign.plivo import PlivoClient
from campaign.signature import (
    SIGNATURE_V3_HEADER,
    SIGNATURE_V3_NONCE_HEADER,
    compute_signature_v3,
)
from campaign.voice import VoiceContent
from campaign.worker import Worker

REMINDER = "Hello {first_name}, your appointment is on {appointment}."
CONTACTS = {
    "+14155551001": {"first_name": "Ann", "appointment": "3 December at 10:00"},
    "+14155551002": {"first_name": "Bob", "appointment": "4 December at 09:30"},
    # Markup in a field is spoken, never obeyed.
    "+14155551003": {
        "first_name": "</Speak><Dial>+19005550000</Dial><Speak>Eve & co",
        "appointment": "5 December",
    },
}


async def add_campaign(pool: asyncpg.Pool, app_url: str, content: VoiceContent, **spec: Any) -> int:
    """A campaign whose answer the engine serves, with CONTACTS and their fields."""
    values: dict[str, Any] = {
        "name": "reminders",
        "from_number": FROM,
        "answer_url": f"{app_url}/plivo/answer",
        "content": content,
        "serve_answers_at": app_url,
        "track_calls_at": app_url,
        **spec,
    }
    async with pool.acquire() as connection:
        campaign = await queries.create_campaign(connection, CampaignSpec(**values))
        await connection.executemany(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, fields)"
            " VALUES ($1, $2, $2, $3)",
            [(campaign.id, number, fields) for number, fields in CONTACTS.items()],
        )
    return campaign.id


async def dial_all(pool: asyncpg.Pool, base_url: str, done: Any) -> None:
    async with aiohttp.ClientSession() as session:
        stop = asyncio.Event()
        worker = Worker(pool, PlivoClient(session, client_config(base_url)), worker_config())
        task = asyncio.create_task(worker.run(stop=stop))
        try:
            await wait_for(done, timeout_s=20)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def test_each_callee_hears_their_own_fields_and_their_key_is_recorded(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """Ann hears "Hello Ann, your appointment is on 3 December at 10:00.", Bob his own; Eve's
    markup is spoken as text (no <Dial> reached the simulator); every callee presses 1, which
    lands in `responses` as `confirmed` once per attempt, in contact_outcomes, in
    campaign_progress, and they hear what --after says."""
    content = VoiceContent(
        message=REMINDER,
        gather={"1": "confirmed", "2": "cancelled", "9": "opt-out"},
        gather_prompt="Press 1 to confirm.",
        after_keypress={"1": "Thank you, {first_name}."},
    )
    async with rig(pool, status_pool, digit_shares={"1": 1.0}) as plivo:
        campaign_id = await add_campaign(pool, plivo.app_url, content)

        async def responded() -> bool:
            count: int = await pool.fetchval("SELECT count(*) FROM responses")
            return count == 3

        await dial_all(pool, plivo.simulator.base_url, responded)
        await plivo.simulator.simulator.settle()
        ledger = plivo.simulator.ledger
        assert ledger.spoken_text("+14155551001") == (
            "Hello Ann, your appointment is on 3 December at 10:00. Press 1 to confirm. "
            "Thank you, Ann."
        )
        assert ledger.spoken_text("+14155551002").startswith(
            "Hello Bob, your appointment is on 4 December at 09:30."
        )
        assert ledger.spoken_text("+14155551003").startswith(
            "Hello </Speak><Dial>+19005550000</Dial><Speak>Eve & co, your appointment"
        )
        for destination in CONTACTS:
            assert ledger.digits_pressed(destination) == ["1"]
            kinds = {entry["kind"] for entry in ledger.heard(destination)}
            assert kinds <= {"speak", "digits"}, kinds
    rows = await pool.fetch(
        "SELECT c.destination, r.digits, r.meaning, r.attempt FROM responses r"
        " JOIN contacts c ON c.id = r.contact_id ORDER BY c.destination"
    )
    assert [tuple(row) for row in rows] == [(d, "1", "confirmed", 1) for d in sorted(CONTACTS)]
    outcomes = await pool.fetch("SELECT response FROM contact_outcomes")
    assert {row["response"] for row in outcomes} == {"confirmed"}
    progress = await pool.fetchval(
        "SELECT responses FROM campaign_progress WHERE campaign_id = $1", campaign_id
    )
    assert progress == {"confirmed": 3}


async def test_an_opt_out_key_suppresses_the_number_at_once(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """A key whose meaning is opt-out puts the number on the list `default`, naming the
    campaign, so that no campaign calls it again."""
    content = VoiceContent(message=REMINDER, gather={"1": "confirmed", "9": "opt-out"})
    async with rig(pool, status_pool, digit_shares={"9": 1.0}) as plivo:
        await add_campaign(pool, plivo.app_url, content)
        await dial_all(
            pool,
            plivo.simulator.base_url,
            lambda: pool.fetchval("SELECT count(*) = 3 FROM suppressions"),
        )
    rows = await pool.fetch("SELECT list, destination, reason FROM suppressions")
    assert {row["destination"] for row in rows} == set(CONTACTS)
    assert {row["list"] for row in rows} == {"default"}
    assert all("opt-out: pressed 9 on a call of campaign reminders" in r["reason"] for r in rows)


async def test_voicemail_is_left_on_a_machine_and_recorded(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """With machine detection and --on-machine voicemail, a machine hears the beep wait and the
    voicemail message with its fields; the keypress menu is not played; contacts record
    machine_action `voicemail`."""
    content = VoiceContent(
        message=REMINDER,
        gather={"1": "confirmed"},
        on_machine="voicemail",
        voicemail_message="Hi {first_name}, please call us back.",
    )
    async with rig(pool, status_pool, machine_share=1.0, digit_shares={"1": 1.0}) as plivo:
        await add_campaign(
            pool, plivo.app_url, content, call_parameters={"machine_detection": "true"}
        )
        await dial_all(
            pool,
            plivo.simulator.base_url,
            lambda: pool.fetchval(
                "SELECT count(*) = 3 FROM contacts WHERE machine_action = 'voicemail'"
            ),
        )
        await plivo.simulator.simulator.settle()
        heard = plivo.simulator.ledger.heard("+14155551001")
    assert [entry["kind"] for entry in heard] == ["wait", "speak"]
    assert heard[1]["text"] == "Hi Ann, please call us back."
    assert await pool.fetchval("SELECT count(*) FROM responses") == 0


async def test_forged_answer_and_digit_requests_are_refused(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """An answer or digits request without Plivo's signature, or signed with another token,
    gets 403 and changes nothing; a signed answer for a call we do not know gets a polite
    hang-up, never an error page."""
    content = VoiceContent(message=REMINDER, gather={"9": "opt-out"})
    async with rig(pool, status_pool) as plivo, aiohttp.ClientSession() as session:
        campaign_id = await add_campaign(pool, plivo.app_url, content)
        form = {"To": "14155551001", "Digits": "9", "CallUUID": "forged"}
        for path in ("/plivo/answer", "/plivo/digits"):
            url = f"{plivo.app_url}{path}?campaign={campaign_id}"
            async with session.post(url, data=form) as unsigned:
                assert unsigned.status == 403
            signature = compute_signature_v3("not-the-token", url, "n1", form, "POST")
            headers = {SIGNATURE_V3_HEADER: signature, SIGNATURE_V3_NONCE_HEADER: "n1"}
            async with session.post(url, data=form, headers=headers) as forged:
                assert forged.status == 403
        url = f"{plivo.app_url}/plivo/answer?campaign={campaign_id}"
        unknown = {"To": "14155559999", "CallUUID": "x"}
        signature = compute_signature_v3(AUTH_TOKEN, url, "n2", unknown, "POST")
        headers = {SIGNATURE_V3_HEADER: signature, SIGNATURE_V3_NONCE_HEADER: "n2"}
        async with session.post(url, data=unknown, headers=headers) as reply:
            assert reply.status == 200
            assert await reply.text() == "<Response><Hangup/></Response>"
    assert await pool.fetchval("SELECT count(*) FROM responses") == 0
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0


async def test_calls_a_machine_took_are_redialled(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """--redial-on machine with --on-machine hangup: every call reaches a machine, is hung up
    on, and is dialled again once (max 2 attempts); the old code redialled only by call status,
    and a machine's call is `completed`."""
    content = VoiceContent(message=REMINDER, on_machine="hangup")
    async with rig(pool, status_pool, machine_share=1.0) as plivo:
        await add_campaign(
            pool,
            plivo.app_url,
            content,
            call_parameters={"machine_detection": "true"},
            redial_on=("machine",),
            redial_delays_s=(0,),
            max_attempts=2,
        )
        await dial_all(
            pool,
            plivo.simulator.base_url,
            lambda: pool.fetchval(
                "SELECT count(*) = 3 FROM contacts WHERE attempts = 2 AND call_status IS NOT NULL"
            ),
        )
        counts = plivo.simulator.ledger.dial_counts()
    assert sorted(counts.values()) == [2, 2, 2]
    rows = await pool.fetch("SELECT machine, machine_action FROM contacts")
    assert {tuple(row) for row in rows} == {(True, "hangup")}
    # Per attempt too: both attempts of each contact say what the answer did.
    attempts = await pool.fetch("SELECT attempt, machine_action FROM dial_attempts")
    assert sorted(tuple(row) for row in attempts) == [(1, "hangup")] * 3 + [(2, "hangup")] * 3


async def test_an_opt_out_after_another_key_of_the_same_call_still_counts(
    pool: asyncpg.Pool,
) -> None:
    """An --answer-xml menu may take two keys in one call: 1, then 9 = opt-out. The response of
    the attempt stays the first key's, but the opt-out suppresses the number all the same."""
    content = VoiceContent(answer_template="<Response/>", gather={"1": "ok", "9": "opt-out"})
    campaign_id = await add_campaign(pool, "http://127.0.0.1:9", content)
    for digits, meaning, result in (("1", "ok", "recorded"), ("9", "opt-out", "duplicate")):
        assert (
            await queries.record_keypress(
                pool,
                campaign_id=campaign_id,
                destination="+14155551001",
                call_uuid="c1",
                digits=digits,
                meaning=meaning,
                opt_out_reason="opt-out: test",
            )
            == result
        )
    assert await pool.fetchval("SELECT meaning FROM responses") == "ok"
    assert await pool.fetchval("SELECT destination FROM suppressions") == "+14155551001"


async def test_a_new_attempt_clears_what_the_answer_did_for_a_machine(
    pool: asyncpg.Pool,
) -> None:
    """machine_action belongs to the latest attempt: a redial starts without it (as `machine`)."""
    campaign_id = await add_campaign(pool, "http://127.0.0.1:9", VoiceContent(message="Hi"))
    contact_id = await pool.fetchval(
        "UPDATE contacts SET machine = true, machine_action = 'voicemail'"
        " WHERE destination = '+14155551001' RETURNING id"
    )
    await pool.execute(
        "SELECT start_dial_attempts($1, 'w', ARRAY[$2::bigint], ARRAY['+14155551001'], 60.0)",
        campaign_id,
        contact_id,
    )
    row = await pool.fetchrow(
        "SELECT machine, machine_action FROM contacts WHERE id = $1", contact_id
    )
    assert row is not None
    assert tuple(row) == (None, None)
