"""The `transom` command against a real database (SQLite, or PostgreSQL when configured)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SECRET = "c" * 40


@pytest.fixture
def cli(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    config = tmp_path / "transom.toml"
    config.write_text(f'[server]\nsession_secret = "{SECRET}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_")}
    # The database comes through the environment override, as an operator would set it.
    env["TRANSOM_DATABASE_URL"] = database_url

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "transom.cli", "--config", str(config), *args],
                              capture_output=True, text=True, env=env, input=stdin)

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_account_space_role_group_user_token_lifecycle(cli) -> None:  # type: ignore[no-untyped-def]
    ok(cli("db", "upgrade"))
    ok(cli("accounts", "create", "acme"))
    ok(cli("spaces", "create", "--account", "acme", "Trial"))
    roles = ok(cli("roles", "list", "--account", "acme")).splitlines()
    assert roles == ["space\tSpace Admin", "space\tSpace Developer", "space\tSpace Member",
                     "account\tAccount Admin", "account\tAccount Member"]
    ok(cli("groups", "create", "--account", "acme", "Dev", "--idp-identifier", "0b1c-guid"))
    ok(cli("users", "create", "--account", "acme", "--password-stdin", "--account-role", "Account Admin",
           "ada@acme.example", stdin="long enough password\n"))
    ok(cli("groups", "add-member", "--account", "acme", "Dev", "ada@acme.example"))
    shown = json.loads(ok(cli("users", "show", "--account", "acme", "--json", "ADA@acme.example")))
    assert shown["email"] == "ada@acme.example"
    assert shown["account_role"] == "Account Admin"
    assert shown["groups"] == [{"name": "Dev", "idp_identifier": "0b1c-guid", "source": "manual"}]
    assert ok(cli("groups", "members", "--account", "acme", "Dev")).strip() == "ada@acme.example\tmanual"
    ok(cli("groups", "set-idp-identifier", "--account", "acme", "Dev", ""))
    shown = json.loads(ok(cli("users", "show", "--account", "acme", "--json", "ada@acme.example")))
    assert shown["groups"][0]["idp_identifier"] is None
    out = ok(cli("tokens", "create", "--account", "acme", "--permission", "manage-users", "--name", "okta"))
    token = out.strip().splitlines()[-1]
    assert token.startswith("trn_") and len(token) > 40


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("users", "show", "--account", "acme", "nobody@acme.example"), "no user 'nobody@acme.example'"),
        (("spaces", "create", "--account", "nope", "Trial"), "no account named 'nope'"),
        (("users", "create", "--account", "acme", "not-an-email"), "is not an email address"),
        (("tokens", "create", "--account", "acme", "--permission", "root"), "unknown permission"),
        (("groups", "add-member", "--account", "acme", "Ghost", "ada@acme.example"), "no group named 'Ghost'"),
        (("users", "create", "--account", "acme", "--account-role", "Emperor", "x@acme.example"),
         "no account role named 'Emperor'"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(cli, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    ok(cli("accounts", "create", "acme"))
    result = cli(*args)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_users_show_json_is_only_json(cli) -> None:  # type: ignore[no-untyped-def]
    ok(cli("accounts", "create", "acme"))
    ok(cli("users", "create", "--account", "acme", "ada@acme.example"))
    out = ok(cli("users", "show", "--account", "acme", "--json", "ada@acme.example"))
    assert json.loads(out)["status"] == "active"


def test_parallel_creates_differing_in_case_give_one_user(cli) -> None:  # type: ignore[no-untyped-def]
    ok(cli("accounts", "create", "acme"))
    ok(cli("db", "upgrade"))
    emails = ["Grace@Acme.example", "grace@acme.EXAMPLE"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda e: cli("users", "create", "--account", "acme", e), emails))
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1], [r.stderr for r in results]
    failed = next(r for r in results if r.returncode == 1)
    assert "already exists" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    shown = json.loads(ok(cli("users", "show", "--account", "acme", "--json", "grace@acme.example")))
    assert shown["email"].lower() == "grace@acme.example"


def test_plugins_lists_builtin_types(cli) -> None:  # type: ignore[no-untyped-def]
    out = ok(cli("plugins"))
    names = [line.split("\t")[0] for line in out.splitlines()]
    assert {"azure_ad", "okta", "generic_saml"} <= set(names)


def test_look_alike_user_names_are_one_user(cli) -> None:  # type: ignore[no-untyped-def]
    ok(cli("accounts", "create", "acme"))
    ok(cli("users", "create", "--account", "acme", "admin@acme.example"))
    result = cli("users", "create", "--account", "acme", "ａｄｍｉｎ@acme.example")
    assert result.returncode == 1
    assert "already exists" in result.stderr
