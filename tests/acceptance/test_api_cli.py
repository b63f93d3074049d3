"""The HTTP API as users meet it: `campaign api-key` run as a subprocess, `campaign serve`
answering /api/v1/ with the keys it made, the same words as the CLI for the same mistake, and
a bounded property-based run of schemathesis against the running server."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
import pytest
from api_fixtures import serve_process


def run(command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def get(url: str, key: str | None, *, method: str = "GET") -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, method=method)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


async def test_api_key_create_list_revoke(
    campaign_command: list[str], cli_env: dict[str, str], database_url: str
) -> None:
    """`create` prints the key alone, once, and stores only its SHA-256; `list` shows names and
    rights, never a key; the key works against `campaign serve` until `revoke`; a read-only
    key gets 403 for a write; a taken name is refused."""
    created = run(campaign_command, cli_env, "api-key", "create", "crm")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"
    assert key.startswith("cpk_")
    assert len(key) > 40
    reader = run(campaign_command, cli_env, "api-key", "create", "dash", "--read-only")
    read_only_key = reader.stdout.strip()
    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetch("SELECT * FROM api_keys ORDER BY name")
    finally:
        await connection.close()
    assert [row["key_sha256"] for row in stored] == [
        hashlib.sha256(key.encode()).digest(),
        hashlib.sha256(read_only_key.encode()).digest(),
    ]
    assert key not in repr([dict(row) for row in stored])
    listed = run(campaign_command, cli_env, "api-key", "list", "--json")
    assert [(k["name"], k["read_only"]) for k in json.loads(listed.stdout)] == [
        ("crm", False),
        ("dash", True),
    ]
    assert key not in listed.stdout
    again = run(campaign_command, cli_env, "api-key", "create", "crm")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    with serve_process(campaign_command, cli_env) as (base, process):
        assert get(base + "/api/v1/campaigns", key)[0] == 200
        assert get(base + "/api/v1/campaigns", None)[0] == 401
        status, body = get(base + "/api/v1/campaigns/x/pause", read_only_key, method="POST")
        assert status == 403
        assert body["type"] == "urn:campaign:problem:forbidden"
        revoked = run(campaign_command, cli_env, "api-key", "revoke", "crm")
        assert revoked.returncode == 0
        assert get(base + "/api/v1/campaigns", key)[0] == 401
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert key not in out + err
    assert read_only_key not in out + err
    missing = run(campaign_command, cli_env, "api-key", "revoke", "crm")
    assert missing.returncode == 1
    assert "no live API key named 'crm'" in missing.stderr


def _upload(base: str, key: str, settings: dict[str, object]) -> dict[str, object]:
    """POST /api/v1/campaigns with `settings` and a two-row CSV; the problem it answers."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="settings"\r\n'
        f"Content-Type: application/json\r\n\r\n{json.dumps(settings)}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\nphone\n+14155550101\n+14155550102\n\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        base + "/api/v1/campaigns",
        data=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused, urllib.request.urlopen(request):
        pass
    with refused.value as error:
        assert error.code == 422
        problem: dict[str, object] = json.loads(error.read())
    return problem


def test_the_api_says_what_the_cli_says(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The same mistake through `campaign load` and through POST /api/v1/campaigns: the
    problem's detail is the CLI's error line (a click range, a rule of specs.py)."""
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("phone\n+14155550101\n+14155550102\n")
    key = run(campaign_command, cli_env, "api-key", "create", "words").stdout.strip()
    base_options = ["--name", "w", "--from", "+14155550100", "--answer-url", "https://e.com/a"]
    mistakes: list[tuple[list[str], dict[str, object]]] = [
        (["--batch-size", "0"], {"batch-size": 0}),
        (["--redial-delays", "5x"], {"redial-delays": "5x"}),
        (["--calling-days", "someday"], {"calling-days": "someday"}),
    ]
    with serve_process(campaign_command, cli_env) as (base, _process):
        for options, settings in mistakes:
            cli = run(campaign_command, cli_env, "load", str(csv_file), *base_options, *options)
            assert cli.returncode == 2
            problem = _upload(
                base,
                key,
                {"name": "w", "from": "+14155550100", "answer-url": "https://e.com/a", **settings},
            )
            detail = str(problem["detail"])
            assert detail in cli.stderr, (detail, cli.stderr)
            errors = problem["errors"]
            assert isinstance(errors, list)
            assert errors[0]["field"] == next(iter(settings))


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A bounded property-based run (schemathesis: examples from the document, its coverage
    and fuzzing phases, 10 examples an operation, a fixed seed) against `campaign serve`: no
    5xx, and every status, media type and body as the document says."""
    key = run(campaign_command, cli_env, "api-key", "create", "fuzz").stdout.strip()
    with serve_process(campaign_command, cli_env) as (base, process):
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "run",
                f"{base}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {key}",
                "--max-examples",
                "10",
                "--seed",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,"
                "response_schema_conformance",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=500,
            check=False,
            cwd=tmp_path,
        )
        process.terminate()
        _out, err = process.communicate(timeout=20)
    assert result.returncode == 0, result.stdout[-5000:]
    assert "passed" in result.stdout
    assert key not in err
