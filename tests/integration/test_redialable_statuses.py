"""RedialableCallStatus says what the database allows in campaigns.redial_on, no more, no less."""

from __future__ import annotations

import re

import asyncpg

from campaign.models import RedialableCallStatus


async def test_redialable_statuses_equal_the_check_constraint(pool: asyncpg.Pool) -> None:
    """The enum's values, in order, are the array of the CHECK on campaigns.redial_on, so that
    `campaign load --redial-on` accepts exactly the statuses the table stores."""
    definitions = await pool.fetch(
        """
        SELECT pg_get_constraintdef(oid) AS definition
        FROM pg_constraint
        WHERE conrelid = 'campaigns'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%redial_on <@%'
        """
    )
    assert len(definitions) == 1, definitions
    allowed = re.findall(r"'([^']*)'::text", definitions[0]["definition"])
    assert allowed == [status.value for status in RedialableCallStatus]
