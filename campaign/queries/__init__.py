"""The query layer: the only code that binds parameters to SQL.

Each named block of sql/queries.sql has one typed async function here, with keyword arguments
and typed results, grouped by concept in the modules of this package and re-exported, so that
callers write `queries.claim_batch(pool, campaign_id=…, …)`. The tables, views and functions
the statements use are defined in sql/schema.sql.
"""

from __future__ import annotations

from campaign.queries.base import Connection, Executor, block_names
from campaign.queries.batches import (
    Claim,
    ContactReply,
    FailureRecorded,
    claim_batch,
    fence,
    record_failure,
    record_reply,
    release_claims,
    unsend,
    write_ahead,
)
from campaign.queries.callbacks import record_call_events
from campaign.queries.campaigns import (
    calling_window,
    campaign_by_name,
    campaign_for_load,
    campaign_status,
    cancel_contacts,
    create_campaign,
    lock_campaign_status,
    notify_work,
    progress,
    progress_all,
    reopen_campaign,
    sending_count,
    set_campaign_status,
)
from campaign.queries.cancelling import (
    QueuedContact,
    advisory_unlock,
    mark_cancelled_at_plivo,
    mark_left_queue,
    queued_contacts,
    try_advisory_lock,
)
from campaign.queries.exporting import contact_outcome_chunks, export_field_names
from campaign.queries.loading import (
    create_load_staging,
    insert_staged_contacts,
    time_zone_names,
)
from campaign.queries.ratelimits import Slot, reserve_request_slot, reserve_retry_slots
from campaign.queries.reconciling import (
    FoundContact,
    NotFoundSettled,
    UnknownContact,
    UnknownContacts,
    known_call_uuids,
    known_request_uuids,
    lock_campaigns_of_contacts,
    reconcile_found,
    reconcile_not_found,
    unknown_contacts,
)
from campaign.queries.service import (
    QueuedOutsideWindow,
    complete_finished,
    dialable_campaigns,
    expire_ended_campaigns,
    lock_finished_campaigns,
    pause_running_campaigns,
    prune_number_calls,
    queued_outside_window,
    recover_expired_leases,
    reopen_unfinished,
    requeue_cancelled_calls,
    work_left,
)

__all__ = [
    "Claim",
    "Connection",
    "ContactReply",
    "Executor",
    "FailureRecorded",
    "FoundContact",
    "NotFoundSettled",
    "QueuedContact",
    "QueuedOutsideWindow",
    "Slot",
    "UnknownContact",
    "UnknownContacts",
    "advisory_unlock",
    "block_names",
    "calling_window",
    "campaign_by_name",
    "campaign_for_load",
    "campaign_status",
    "cancel_contacts",
    "claim_batch",
    "complete_finished",
    "contact_outcome_chunks",
    "create_campaign",
    "create_load_staging",
    "dialable_campaigns",
    "expire_ended_campaigns",
    "export_field_names",
    "fence",
    "insert_staged_contacts",
    "known_call_uuids",
    "known_request_uuids",
    "lock_campaign_status",
    "lock_campaigns_of_contacts",
    "lock_finished_campaigns",
    "mark_cancelled_at_plivo",
    "mark_left_queue",
    "notify_work",
    "pause_running_campaigns",
    "progress",
    "progress_all",
    "prune_number_calls",
    "queued_contacts",
    "queued_outside_window",
    "reconcile_found",
    "reconcile_not_found",
    "record_call_events",
    "record_failure",
    "record_reply",
    "recover_expired_leases",
    "release_claims",
    "reopen_campaign",
    "reopen_unfinished",
    "requeue_cancelled_calls",
    "reserve_request_slot",
    "reserve_retry_slots",
    "sending_count",
    "set_campaign_status",
    "time_zone_names",
    "try_advisory_lock",
    "unknown_contacts",
    "unsend",
    "work_left",
    "write_ahead",
]
