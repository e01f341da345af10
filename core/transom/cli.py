"""The ``transom`` command. Every command takes ``--config`` and exits non-zero with a
one-line message on bad input."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session

from transom import directory
from transom.config import Config, bind_connectors, load_config
from transom.db import Database
from transom.errors import TransomError
from transom.groups import user_is_group_synced
from transom.migrate import upgrade
from transom.plugins import PluginHost, installed_plugins

F = TypeVar("F", bound=Callable[..., Any])
#: how long ``serve --workers N`` lets a worker take to answer the supervisor (see serve)
WORKER_HEALTHCHECK_SECONDS = 60


class Ctx:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def checked_config(self) -> tuple[Config, PluginHost]:
        config = self.config
        plugins = PluginHost.load(config.enabled_types)
        bind_connectors(config, plugins.types)
        return config, plugins

    @contextmanager
    def db(self) -> Iterator[Session]:
        database = Database(self.config.server.database_url)
        try:
            upgrade(database.engine)
            with database.transaction() as session:
                yield session
        finally:
            database.dispose()


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def handle_errors(func: F) -> F:
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TransomError as exc:
            fail(exc.message)
        except Exception as exc:  # one line, never a traceback for an operator
            fail(f"{type(exc).__name__}: {exc}".splitlines()[0])

    return wrapper  # type: ignore[return-value]


class _LazyGroup(click.Group):
    """Imports the heavy commands (demo: a whole IdP; explain: both protocol stacks) only
    when they run, so everyday commands start fast."""

    lazy = {"demo": "transom.demo", "explain": "transom.explain"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            command: click.Command = importlib.import_module(self.lazy[cmd_name]).command
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup)
@click.option("--config", "config_path", envvar="TRANSOM_CONFIG", default=None,
              help="TOML config file (default ./transom.toml)")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Transom: single sign-on and SCIM provisioning host."""
    ctx.obj = Ctx(config_path)


pass_ctx = click.make_pass_decorator(Ctx)


@main.command("check-config")
@pass_ctx
@handle_errors
def check_config(ctx: Ctx) -> None:
    """Validate the config and the plugins it enables."""
    config, plugins = ctx.checked_config()
    click.echo(
        f"config ok: {len(config.connectors)} connector(s), types: "
        f"{', '.join(sorted(plugins.types)) or 'none'}"
    )


@main.command("plugins")
@pass_ctx
@handle_errors
def plugins_cmd(ctx: Ctx) -> None:
    """List installed connector plugins and the connectors that use them."""
    try:
        entries = ctx.config.connector_entries
    except TransomError:
        entries = []
    for plugin in installed_plugins():
        users = [e.id for e in entries if e.type == plugin.type_name]
        click.echo(
            f"{plugin.type_name}\t{plugin.distribution} {plugin.version}\t{plugin.value}\t"
            f"connectors: {', '.join(users) or '-'}"
        )


@main.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
@pass_ctx
@handle_errors
def db_upgrade(ctx: Ctx) -> None:
    """Apply pending migrations."""
    database = Database(ctx.config.server.database_url)
    try:
        upgrade(database.engine)
    finally:
        database.dispose()
    click.echo("database is up to date")


@main.group("accounts")
def accounts() -> None:
    """Accounts (tenants)."""


@accounts.command("create")
@click.argument("name")
@pass_ctx
@handle_errors
def accounts_create(ctx: Ctx, name: str) -> None:
    with ctx.db() as db:
        account = directory.create_account(db, name=name)
    click.echo(f"account '{account.name}' created with the default roles")


@main.group("spaces")
def spaces() -> None:
    """Spaces."""


@spaces.command("create")
@click.option("--account", required=True)
@click.argument("name")
@pass_ctx
@handle_errors
def spaces_create(ctx: Ctx, account: str, name: str) -> None:
    with ctx.db() as db:
        space = directory.create_space(db, account=directory.get_account(db, name=account), name=name)
    click.echo(f"space '{space.name}' created")


@main.group("roles")
def roles() -> None:
    """Space and account roles."""


@roles.command("list")
@click.option("--account", required=True)
@pass_ctx
@handle_errors
def roles_list(ctx: Ctx, account: str) -> None:
    with ctx.db() as db:
        for role in directory.list_roles(db, account=directory.get_account(db, name=account)):
            click.echo(f"{role.scope}\t{role.name}")


@main.group("groups")
def groups() -> None:
    """Groups and their IdP identifiers."""


@groups.command("create")
@click.option("--account", required=True)
@click.option("--idp-identifier", default=None)
@click.argument("name")
@pass_ctx
@handle_errors
def groups_create(ctx: Ctx, account: str, idp_identifier: str | None, name: str) -> None:
    with ctx.db() as db:
        group = directory.create_group(
            db, account=directory.get_account(db, name=account), name=name, idp_identifier=idp_identifier
        )
    click.echo(f"group '{group.name}' created" + (f" mapped to {group.idp_identifier}" if group.idp_identifier else ""))


@groups.command("set-idp-identifier")
@click.option("--account", required=True)
@click.argument("name")
@click.argument("idp_identifier")
@pass_ctx
@handle_errors
def groups_set_idp(ctx: Ctx, account: str, name: str, idp_identifier: str) -> None:
    with ctx.db() as db:
        acc = directory.get_account(db, name=account)
        group = directory.get_group(db, account=acc, name=name)
        directory.set_group_idp_identifier(db, account=acc, group=group, idp_identifier=idp_identifier, actor="cli")
    click.echo(f"group '{group.name}' " + (f"mapped to {group.idp_identifier}" if group.idp_identifier else "unmapped"))


def _membership(ctx: Ctx, account: str, group_name: str, email: str, add: bool) -> str:
    config, _ = ctx.checked_config()
    with ctx.db() as db:
        acc = directory.get_account(db, name=account)
        group = directory.get_group(db, account=acc, name=group_name)
        user = directory.get_user(db, account=acc, email_or_user_name=email)
        owned = user_is_group_synced(db, user=user, connectors=config.connectors.values())
        if add:
            directory.add_group_member(db, account=acc, group=group, user=user, actor="cli", idp_owned=owned)
            return f"{user.user_name} added to '{group.name}'"
        directory.remove_group_member(db, account=acc, group=group, user=user, actor="cli", idp_owned=owned)
        return f"{user.user_name} removed from '{group.name}'"


@groups.command("add-member")
@click.option("--account", required=True)
@click.argument("group")
@click.argument("email")
@pass_ctx
@handle_errors
def groups_add_member(ctx: Ctx, account: str, group: str, email: str) -> None:
    click.echo(_membership(ctx, account, group, email, add=True))


@groups.command("remove-member")
@click.option("--account", required=True)
@click.argument("group")
@click.argument("email")
@pass_ctx
@handle_errors
def groups_remove_member(ctx: Ctx, account: str, group: str, email: str) -> None:
    click.echo(_membership(ctx, account, group, email, add=False))


@groups.command("members")
@click.option("--account", required=True)
@click.argument("group")
@pass_ctx
@handle_errors
def groups_members(ctx: Ctx, account: str, group: str) -> None:
    """List a group's members with the source of each membership."""
    with ctx.db() as db:
        acc = directory.get_account(db, name=account)
        grp = directory.get_group(db, account=acc, name=group)
        for user, source in directory.group_members(db, account=acc, group=grp):
            click.echo(f"{user.user_name}\t{source}")


@main.group("users")
def users() -> None:
    """Users."""


@users.command("create")
@click.option("--account", required=True)
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option("--account-role", default=None)
@click.argument("email")
@pass_ctx
@handle_errors
def users_create(ctx: Ctx, account: str, password_stdin: bool, account_role: str | None, email: str) -> None:
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < 8:
            fail("password must be at least 8 characters")
    email = directory.validate_email(email)
    with ctx.db() as db:
        user = directory.create_user(
            db, account=directory.get_account(db, name=account), user_name=email, email=email,
            password=password, account_role=account_role,
        )
    click.echo(f"user {user.user_name} created ({user.id})")


@users.command("show")
@click.option("--account", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.argument("email")
@pass_ctx
@handle_errors
def users_show(ctx: Ctx, account: str, as_json: bool, email: str) -> None:
    with ctx.db() as db:
        user = directory.get_user(db, account=directory.get_account(db, name=account), email_or_user_name=email)
        data = directory.user_json(db, user=user)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{data['user_name']} ({data['status']}, {data['account_role']}) id={data['id']}")
    for s in data["spaces"]:
        click.echo(f"  space {s['space']}: {s['role']}")
    for g in data["groups"]:
        click.echo(f"  group {g['name']} ({g['source']})")


@main.group("tokens")
def tokens() -> None:
    """API tokens (stored hashed)."""


@tokens.command("create")
@click.option("--account", required=True)
@click.option("--permission", "permissions", multiple=True, required=True)
@click.option("--name", default=None)
@pass_ctx
@handle_errors
def tokens_create(ctx: Ctx, account: str, permissions: tuple[str, ...], name: str | None) -> None:
    from transom.tokens import by_secret

    with ctx.db() as db:
        token = directory.create_token(
            db, account=directory.get_account(db, name=account), permissions=list(permissions), name=name
        )
        token_id = by_secret(db, secret=token).id
    click.echo(f"token created (id {token_id}, for `transom tokens revoke`); it is shown once and stored hashed:")
    click.echo(token)


@tokens.command("list")
@click.option("--account", required=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def tokens_list(ctx: Ctx, account: str, as_json: bool) -> None:
    """List the account's API tokens: id, name, permissions, created, last used. Never a secret."""
    from transom.tokens import list_tokens, token_json

    with ctx.db() as db:
        rows = [token_json(t) for t in list_tokens(db, account=directory.get_account(db, name=account))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']}\t{row['name']}\t{','.join(row['permissions'])}\t"
                   f"created {row['created_at']}\tlast used {row['last_used_at'] or 'never'}")


@tokens.command("revoke")
@click.option("--account", required=True)
@click.argument("token_id")
@pass_ctx
@handle_errors
def tokens_revoke(ctx: Ctx, account: str, token_id: str) -> None:
    """Revoke a token by id: refused (401) from the next request on, on every worker."""
    from transom.tokens import revoke_token

    with ctx.db() as db:
        row = revoke_token(db, account=directory.get_account(db, name=account), token_id=token_id, actor="cli")
    click.echo(f"token '{row.name}' ({row.id}) revoked")


@main.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8000, type=int)
@click.option("--workers", default=1, type=int)
@pass_ctx
@handle_errors
def serve(ctx: Ctx, host: str, port: int, workers: int) -> None:
    """Run the HTTP host; applies pending migrations first."""
    import uvicorn

    config, _ = ctx.checked_config()
    database = Database(config.server.database_url)
    try:
        upgrade(database.engine)
    finally:
        database.dispose()
    if config.server.session_secret is None:
        fail('server.session_secret: not set; use session_secret = { env = "TRANSOM_SESSION_SECRET" }')
    if config.path is not None:
        os.environ["TRANSOM_CONFIG"] = str(config.path.resolve())
    # uvicorn kills a worker that does not answer its supervisor's ping within the health-check
    # timeout (5 s by default); importing the app with both SAML and OIDC stacks on a busy
    # 2-core machine took longer, and workers were killed and restarted in a loop.
    uvicorn.run("transom.web.asgi:create", factory=True, host=host, port=port, workers=workers,
                log_level=config.server.log_level.lower(), timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS)


if __name__ == "__main__":
    main()
