"""The CLI as an operator meets it: --version, --config anywhere, help everywhere, list/show/
delete with --json, and demo refusing a taken port before its banner."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from ops_support import clean_env, run_cli

from transom.cli import main

SECRET = "c" * 40


@pytest.fixture
def cli(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    config = tmp_path / "transom.toml"
    config.write_text(f'[server]\nsession_secret = {{ env = "S" }}\ndatabase_url = "{database_url}"\n')
    env = clean_env(S=SECRET)

    def run(*args: str):  # type: ignore[no-untyped-def]
        # --config AFTER the subcommand path, as an operator types it last
        return run_cli(*args, "--config", str(config), env=env)

    return run


def ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("transom ")


def walk(command: click.Command, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from walk(sub, (*path, name))


def test_every_command_and_option_has_help_and_takes_config() -> None:
    seen = 0
    for path, command in walk(main):
        seen += 1
        assert (command.help or command.short_help), f"{' '.join(path)} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{' '.join(path)} {param.opts} has no help"
        if path:
            assert any("--config" in p.opts for p in command.params if isinstance(p, click.Option)), path
    assert seen > 30
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for option in ("--host", "--port", "--workers", "--graceful-timeout", "--config"):
        assert option in help_text


def test_list_show_delete_accounts_spaces_users_groups(cli) -> None:  # type: ignore[no-untyped-def]
    ok(cli("accounts", "create", "acme"))
    ok(cli("accounts", "create", "globex"))
    ok(cli("spaces", "create", "--account", "acme", "Trial"))
    ok(cli("groups", "create", "--account", "acme", "Dev", "--idp-identifier", "g-1"))
    ok(cli("users", "create", "--account", "acme", "ada@acme.example"))
    ok(cli("groups", "add-member", "--account", "acme", "Dev", "ada@acme.example"))

    accounts = json.loads(ok(cli("accounts", "list", "--json")))
    assert [(a["name"], a["users"], a["spaces"], a["groups"]) for a in accounts] == [
        ("acme", 1, 1, 1), ("globex", 0, 0, 0)]
    shown = json.loads(ok(cli("accounts", "show", "acme", "--json")))
    assert shown["name"] == "acme" and shown["connectors"] == []
    assert ok(cli("accounts", "list")).splitlines()[0].startswith("acme\tusers=1 spaces=1 groups=1")

    assert json.loads(ok(cli("spaces", "list", "--account", "acme", "--json")))[0]["name"] == "Trial"
    assert json.loads(ok(cli("spaces", "show", "--account", "acme", "trial", "--json")))["members"] == 0
    users = json.loads(ok(cli("users", "list", "--account", "acme", "--json")))
    assert [u["user_name"] for u in users] == ["ada@acme.example"]
    group = json.loads(ok(cli("groups", "show", "--account", "acme", "Dev", "--json")))
    assert group["idp_identifier"] == "g-1"
    assert group["member_list"] == [{"user_name": "ada@acme.example", "source": "manual"}]
    assert json.loads(ok(cli("groups", "list", "--account", "globex", "--json"))) == []  # scoped by account

    # deletes ask unless --yes (no terminal: the answer is no)
    refused = cli("groups", "delete", "--account", "acme", "Dev")
    assert refused.returncode == 1
    ok(cli("groups", "delete", "--account", "acme", "Dev", "--yes"))
    ok(cli("users", "delete", "--account", "acme", "ada@acme.example", "--yes"))
    ok(cli("spaces", "delete", "--account", "acme", "Trial", "--yes"))
    assert json.loads(ok(cli("users", "list", "--account", "acme", "--json"))) == []
    gone = cli("groups", "show", "--account", "acme", "Dev")
    assert gone.returncode == 1 and "no group named 'Dev'" in gone.stderr
    ok(cli("accounts", "delete", "acme", "--yes"))
    assert [a["name"] for a in json.loads(ok(cli("accounts", "list", "--json")))] == ["globex"]
    missing = cli("accounts", "delete", "acme", "--yes")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no account named 'acme'"


def test_demo_checks_its_port_before_the_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("demo", "--port", str(port), "--data-dir", str(tmp_path / "demo"), timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert f"--port {port + 1}" in result.stderr
    assert "demo" not in result.stdout.lower()  # no banner, no users printed
    assert not (tmp_path / "demo").exists()
