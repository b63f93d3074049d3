"""The browser dashboard served at / beside the callbacks and /api/v1/: server-rendered pages
(Jinja2, autoescaped), a little plain JavaScript, live snapshots over Server-Sent Events.

It reads and writes through a pool of its own, never the dialing pool; it logs in with the HTTP
API's keys (read-only keys see no actions); every action goes through the code the CLI and the
API run (campaign/control.py, the API's load path, campaign/suppression.py, the webhook queries)
and is written to dashboard_audit.
"""
