"""The package's import graph flows one way, and only campaign/queries/ binds SQL.

The README's Architecture section lists the modules in dependency order; this test holds the
code to it, so that a newcomer can trust the picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "campaign"

# Lower layers first. A module may import from its own layer or lower ones, never higher.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "config",
            "models",
            "contact_filter",
            "callparams",
            "dbclock",
            "callerids",
            "bare_digits",
            "formulas",
            "signature",
            "timezones",
            "fast_numbers",
            "voice",
        }
    ),
    frozenset({"destinations"}),
    frozenset({"specs", "db", "metrics"}),
    frozenset({"queries", "plivo"}),
    frozenset({"ratelimit", "suppression_filter"}),
    frozenset({"sending"}),
    frozenset({"recording"}),
    frozenset({"dialing"}),
    frozenset(
        {
            "worker",
            "reconcile",
            "cancellation",
            "callbacks",
            "importer",
            "export",
            "suppression",
            "control",
            "webhooks",
        }
    ),
    frozenset({"web", "live", "console", "simulator"}),
    frozenset({"demo"}),
    # The front ends: the HTTP API parses options with the CLI's own click declarations; the
    # dashboard loads through the API's load path; the CLI serves the dashboard.
    frozenset({"cli", "api", "dashboard", "__main__"}),
)
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def top_level(module_path: Path) -> str:
    """The package-level name a file belongs to: campaign/queries/batches.py → queries."""
    relative = module_path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_campaign_modules(module_path: Path) -> set[str]:
    """The top-level campaign modules a file imports (at any depth, lazily or not)."""
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "campaign":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("campaign."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("campaign."):
                    found.add(alias.name.split(".")[1])
    return found


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in the picture (and in the README) before it is used."""
    names = {top_level(path) for path in source_files()} - {"__init__"}
    assert names - LAYER_OF.keys() == set()


def test_imports_flow_one_way() -> None:
    """No module imports one of a higher layer (worker never imported by queries, say)."""
    upward = []
    for path in source_files():
        name = top_level(path)
        if name == "__init__":
            continue
        for imported in imported_campaign_modules(path) - {name, "__version__"}:
            if LAYER_OF.get(imported, -1) > LAYER_OF[name]:
                upward.append(f"{path.relative_to(PACKAGE.parent)} imports campaign.{imported}")
    assert upward == []


def test_only_the_query_layer_binds_sql() -> None:
    """Outside campaign/queries/, no code reaches the named statements (queries.base, sql())."""
    offenders = []
    for path in source_files():
        if top_level(path) == "queries":
            continue
        text = path.read_text(encoding="utf-8")
        if (
            "queries.base" in text
            or "queries.sql(" in text
            or "from campaign.queries import sql" in text
        ):
            offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert offenders == []


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The import reader finds `from campaign.worker import …` and `from campaign import x`
    (so the test above can fail)."""
    module = tmp_path / "sample.py"
    module.write_text(
        "from campaign.worker import Worker\nfrom campaign import queries, db\n"
        "def later():\n    import campaign.dialing\n",
        encoding="utf-8",
    )
    assert imported_campaign_modules(module) == {"worker", "queries", "db", "dialing"}
