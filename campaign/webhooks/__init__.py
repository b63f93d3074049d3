"""Webhooks out: signed events about campaigns and contacts, sent to the user's own endpoint.

Triggers write each event into the outbox (webhook_deliveries, schema.sql section 12) in the
transaction of the change it tells of; `delivery` sends them, signed by the Standard Webhooks
specification (`signing`), on a pool and an HTTP session of its own, so that a slow or dead
receiver never slows dialing; `urls` refuses endpoints on private networks (SSRF).

Nothing is imported here: `campaign load` checks a URL with `urls` alone, without aiohttp.
"""
