"""The HTTP API under /api/v1/: campaigns, their contacts and outcomes, loads, suppression lists
and responses, for other software to do what the CLI does (issue 16).

Mounted on the app of `campaign serve` and of a worker's HTTP server (campaign/web.py) as a
sub-application, so that its middlewares (problem details, API keys) apply to /api/v1/ only
and the Plivo callbacks keep their own signature check. It reads and writes through a pool of
its own (db.open_api_pool), never the pool a worker dials with. The API is a front end beside
the CLI: it parses options with the CLI's own click declarations and changes campaigns through
the same functions (campaign/control.py, importer.py, suppression.py, export.py).
"""
