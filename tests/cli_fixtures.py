"""What the command-line tests share."""

from __future__ import annotations

# The options of a new campaign in `campaign load`. Calls at any hour: these tests run on the
# wall clock, at whatever hour CI runs them.
LOAD_OPTIONS = [
    "--from",
    "+14155550100",
    "--answer-url",
    "https://example.com/answer.xml",
    "--calling-hours",
    "any",
]
