-- `campaign reconcile`: the uuid of the call a contact's request placed, as Plivo's look-ups
-- (and, later, its callbacks) report it. NULL while no call is known.

ALTER TABLE contacts ADD COLUMN call_uuid text;
