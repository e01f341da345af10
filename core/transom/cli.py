"""The ``transom`` command. Every command and group takes ``--config`` (before or after the
subcommand) and exits non-zero with a one-line message on bad input (docs/cli.md)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session

from transom import directory, inventory
from transom.config import Config, bind_connectors, load_config
from transom.db import Database
from transom.errors import TransomError
from transom.groups import user_is_group_synced
from transom.migrate import upgrade
from transom.models import Account
from transom.plugins import PluginHost, installed_plugins

F = TypeVar("F", bound=Callable[..., Any])
#: how long ``serve --workers N`` lets a worker take to answer the supervisor (see serve)
WORKER_HEALTHCHECK_SECONDS = 60


class Ctx:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None
        #: serve and check-config need a real file: an empty host is never what was meant
        self.require_file = False

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, require_file=self.require_file)
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
            return with_config_option(command)
        return super().get_command(ctx, cmd_name)


CONFIG_HELP = "TOML config file (default: $TRANSOM_CONFIG, else ./transom.toml)"


def _late_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``--config`` after the subcommand: the group's Ctx exists by then (click runs the
    group before it parses the subcommand's arguments)."""
    if value is not None:
        obj = ctx.find_object(Ctx)
        if obj is not None:
            obj.config_path = value
            obj._config = None


def with_config_option(command: click.Command) -> click.Command:
    """Give ``command`` (and, for a group, every subcommand) its own ``--config``."""
    if not any(p.name == "late_config" for p in command.params):
        command.params.append(click.Option(["--config", "late_config"], default=None, expose_value=False,
                                           is_eager=True, callback=_late_config, help=CONFIG_HELP,
                                           metavar="PATH"))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_config_option(sub)
    return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="TRANSOM_CONFIG", default=None, metavar="PATH", help=CONFIG_HELP)
@click.version_option(package_name="transom", prog_name="transom", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Transom: single sign-on and SCIM provisioning host.

    Every command takes --config PATH, before or after the command name."""
    ctx.obj = Ctx(config_path)


pass_ctx = click.make_pass_decorator(Ctx)
account_option = click.option("--account", required=True, metavar="NAME", help="the account (tenant) by name")
json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
yes_option = click.option("--yes", is_flag=True, help="do not ask for confirmation")


def _emit(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text(data))


def _confirm(yes: bool, what: str) -> None:
    if not yes and not click.confirm(f"delete {what}?", default=False, err=True):
        fail("not deleted")


@main.command("check-config")
@click.option("--probe", is_flag=True, help="also fetch what each connector depends on (OIDC discovery and "
              "JWKS, SAML metadata URL, Entra Graph app token) and report reachability, issuer, keys, "
              "certificate expiry and clock skew")
@click.option("--json", "as_json", is_flag=True, help="print the findings (and probes) as JSON")
@click.option("--no-database", is_flag=True, help="skip the database check (accounts the connectors name)")
@pass_ctx
def check_config(ctx: Ctx, probe: bool, as_json: bool, no_database: bool) -> None:
    """Find everything serve (or a first login) would trip on: one line per problem naming
    the connector and the key. Exits 1 on any error; warnings alone exit 0."""
    from transom.checks import check_config as run_checks

    report = run_checks(ctx.config_path, check_database=not no_database)
    probes: list[Any] = []
    if probe and report.config is not None and report.connectors:
        probes = _probe(report.config, report.connectors)
    failed_probes = [p for p in probes if not p.ok]
    if as_json:
        data = report.as_json()
        if probe:
            data["probes"] = [p.as_json() for p in probes]
            data["ok"] = data["ok"] and not failed_probes
        click.echo(json.dumps(data, indent=2))
    else:
        for finding in report.findings:
            click.echo(finding.line(), err=finding.level == "error")
        if probes:
            from transom.probe import table

            click.echo(table(probes))
        if not report.errors:
            click.echo(
                f"config ok: {len(report.connectors)} connector(s), types: {', '.join(report.types) or 'none'}"
                + (f", {len(report.warnings)} warning(s)" if report.warnings else "")
            )
        else:
            # stdout: stderr holds exactly one line per error
            click.echo(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if report.errors or failed_probes:
        sys.exit(1)


def _probe(config: Config, connectors: dict[str, Any]) -> list[Any]:
    from transom.idphttp import MeteredClient
    from transom.plugins import PluginHost
    from transom.probe import probe_all
    from transom.runtime import HTTP_TIMEOUT

    plugins = PluginHost.load({c.type for c in connectors.values()})
    with MeteredClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
        return probe_all(plugins, http, connectors.values(), clock_skew_seconds=config.server.clock_skew_seconds)


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
    """Create an account with the default space and account roles."""
    with ctx.db() as db:
        account = directory.create_account(db, name=name)
    click.echo(f"account '{account.name}' created with the default roles")


@main.group("spaces")
def spaces() -> None:
    """Spaces."""


@spaces.command("create")
@account_option
@click.argument("name")
@pass_ctx
@handle_errors
def spaces_create(ctx: Ctx, account: str, name: str) -> None:
    """Create a space in an account."""
    with ctx.db() as db:
        space = directory.create_space(db, account=directory.get_account(db, name=account), name=name)
    click.echo(f"space '{space.name}' created")


@main.group("roles")
def roles() -> None:
    """Space and account roles."""


@roles.command("list")
@account_option
@pass_ctx
@handle_errors
def roles_list(ctx: Ctx, account: str) -> None:
    """List an account's space and account roles."""
    with ctx.db() as db:
        for role in directory.list_roles(db, account=directory.get_account(db, name=account)):
            click.echo(f"{role.scope}\t{role.name}")


@main.group("groups")
def groups() -> None:
    """Groups and their IdP identifiers."""


@groups.command("create")
@account_option
@click.option("--idp-identifier", default=None, help="the IdP's id for the group (Entra object id, Okta group)")
@click.argument("name")
@pass_ctx
@handle_errors
def groups_create(ctx: Ctx, account: str, idp_identifier: str | None, name: str) -> None:
    """Create a group, optionally mapped to an IdP group."""
    with ctx.db() as db:
        group = directory.create_group(
            db, account=directory.get_account(db, name=account), name=name, idp_identifier=idp_identifier
        )
    click.echo(f"group '{group.name}' created" + (f" mapped to {group.idp_identifier}" if group.idp_identifier else ""))


@groups.command("set-idp-identifier")
@account_option
@click.argument("name")
@click.argument("idp_identifier")
@pass_ctx
@handle_errors
def groups_set_idp(ctx: Ctx, account: str, name: str, idp_identifier: str) -> None:
    """Map a group to an IdP group id ('' unmaps it)."""
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
@account_option
@click.argument("group")
@click.argument("email")
@pass_ctx
@handle_errors
def groups_add_member(ctx: Ctx, account: str, group: str, email: str) -> None:
    """Add a user to a group (a manual membership unless group sync owns the user)."""
    click.echo(_membership(ctx, account, group, email, add=True))


@groups.command("remove-member")
@account_option
@click.argument("group")
@click.argument("email")
@pass_ctx
@handle_errors
def groups_remove_member(ctx: Ctx, account: str, group: str, email: str) -> None:
    """Remove a user from a group."""
    click.echo(_membership(ctx, account, group, email, add=False))


@groups.command("members")
@account_option
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
@account_option
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option("--account-role", default=None, help="account role to give, e.g. 'Account Admin'")
@click.argument("email")
@pass_ctx
@handle_errors
def users_create(ctx: Ctx, account: str, password_stdin: bool, account_role: str | None, email: str) -> None:
    """Create a user (a password user with --password-stdin, else an SSO-only user)."""
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


# -- list, show, delete -------------------------------------------------------------------
# Spaces, users and groups share one shape per verb (the account by --account, the rows from
# inventory): one factory per verb keeps their options, prompts and errors from drifting apart.
# Accounts have no --account and are written out below.

Row = dict[str, Any]


def _list_command(group: click.Group, help_text: str, rows: Callable[[Session, Account], list[Row]],
                  line: Callable[[Row], str]) -> None:
    @group.command("list", help=help_text)
    @account_option
    @json_option
    @pass_ctx
    @handle_errors
    def command(ctx: Ctx, account: str, as_json: bool) -> None:
        with ctx.db() as db:
            data = rows(db, directory.get_account(db, name=account))
        _emit(data, as_json, lambda found: "\n".join(line(r) for r in found))


def _show_command(group: click.Group, help_text: str, row: Callable[[Session, Account, str], Row],
                  text: Callable[[Row], str], *, metavar: str = "NAME") -> None:
    @group.command("show", help=help_text)
    @account_option
    @json_option
    @click.argument("name", metavar=metavar)
    @pass_ctx
    @handle_errors
    def command(ctx: Ctx, account: str, as_json: bool, name: str) -> None:
        with ctx.db() as db:
            data = row(db, directory.get_account(db, name=account), name)
        _emit(data, as_json, text)


def _delete_command(group: click.Group, help_text: str, what: str, done: str,
                    delete: Callable[[Session, Account, str], str], *, metavar: str = "NAME") -> None:
    """``delete`` removes the row and returns the name ``done`` reports it by (the stored spelling)."""

    @group.command("delete", help=help_text)
    @account_option
    @yes_option
    @click.argument("name", metavar=metavar)
    @pass_ctx
    @handle_errors
    def command(ctx: Ctx, account: str, yes: bool, name: str) -> None:
        _confirm(yes, f"{what} '{name}' of account '{account}'")
        with ctx.db() as db:
            deleted = delete(db, directory.get_account(db, name=account), name)
        click.echo(done.format(deleted))


def _account_line(a: Row) -> str:
    return f"{a['name']}\tusers={a['users']} spaces={a['spaces']} groups={a['groups']} tokens={a['tokens']}"


@accounts.command("list")
@json_option
@pass_ctx
@handle_errors
def accounts_list(ctx: Ctx, as_json: bool) -> None:
    """List accounts with their numbers of users, spaces, groups and tokens."""
    with ctx.db() as db:
        data = inventory.list_accounts(db)
    _emit(data, as_json, lambda rows: "\n".join(_account_line(a) for a in rows))


@accounts.command("show")
@json_option
@click.argument("name")
@pass_ctx
@handle_errors
def accounts_show(ctx: Ctx, as_json: bool, name: str) -> None:
    """Show one account, and the configured connectors that log into it."""
    with ctx.db() as db:
        data = inventory.account_json(db, directory.get_account(db, name=name))
    try:
        data["connectors"] = sorted(e.id for e in ctx.config.connector_entries if e.account == name)
    except TransomError:
        data["connectors"] = []
    _emit(data, as_json, lambda a: f"{_account_line(a)} id={a['id']}\n  connectors: "
          f"{', '.join(a['connectors']) or '-'}")


@accounts.command("delete")
@yes_option
@click.argument("name")
@pass_ctx
@handle_errors
def accounts_delete(ctx: Ctx, yes: bool, name: str) -> None:
    """Delete an account with all its users, spaces, groups, tokens and audit trail."""
    _confirm(yes, f"account '{name}' and everything in it")
    with ctx.db() as db:
        inventory.delete_account(db, account=directory.get_account(db, name=name))
    click.echo(f"account '{name}' deleted")


_list_command(spaces, "List an account's spaces with their member counts.",
              lambda db, acc: inventory.list_spaces(db, account=acc),
              lambda r: f"{r['name']}\tmembers={r['members']}")
_show_command(spaces, "Show one space.",
              lambda db, acc, name: inventory.space_json(db, inventory.get_space(db, account=acc, name=name)),
              lambda r: f"{r['name']}\tmembers={r['members']} id={r['id']}")
_delete_command(spaces, "Delete a space and its memberships.", "space", "space '{}' deleted",
                lambda db, acc, name: inventory.delete_space(db, account=acc, name=name, actor="cli").name)

_list_command(users, "List an account's users.",
              lambda db, acc: inventory.list_users(db, account=acc),
              lambda r: f"{r['user_name']}\t{r['status']}\t{r['id']}")
_show_command(users, "Show a user with their spaces, roles and groups.",
              lambda db, acc, email: directory.user_json(
                  db, user=directory.get_user(db, account=acc, email_or_user_name=email)),
              lambda r: "\n".join([f"{r['user_name']} ({r['status']}, {r['account_role']}) id={r['id']}",
                                   *(f"  space {s['space']}: {s['role']}" for s in r["spaces"]),
                                   *(f"  group {g['name']} ({g['source']})" for g in r["groups"])]),
              metavar="EMAIL")
_delete_command(users, "Delete a user with their memberships, identities and sessions.", "user", "user {} deleted",
                lambda db, acc, email: inventory.delete_user(db, account=acc, email_or_user_name=email,
                                                             actor="cli").user_name,
                metavar="EMAIL")


def _group_line(r: Row) -> str:
    return f"{r['name']}\t{r['idp_identifier'] or '-'}\tmembers={r['members']}"


def _group_with_members(db: Session, acc: Account, name: str) -> Row:
    group = directory.get_group(db, account=acc, name=name)
    data = inventory.group_json(db, group)
    data["member_list"] = [{"user_name": u.user_name, "source": src}
                           for u, src in directory.group_members(db, account=acc, group=group)]
    return data


_list_command(groups, "List an account's groups with their IdP identifiers and member counts.",
              lambda db, acc: inventory.list_groups(db, account=acc), _group_line)
_show_command(groups, "Show one group with its members and where each membership comes from.", _group_with_members,
              lambda r: "\n".join([_group_line(r), *(f"  {m['user_name']}\t{m['source']}" for m in r["member_list"])]))
_delete_command(groups, "Delete a group and its memberships.", "group", "group '{}' deleted",
                lambda db, acc, name: inventory.delete_group(db, account=acc, name=name, actor="cli").name)


@main.group("tokens")
def tokens() -> None:
    """API tokens (stored hashed)."""


@tokens.command("create")
@account_option
@click.option("--permission", "permissions", multiple=True, required=True,
              help="manage-users (SCIM) or admin; repeat for several")
@click.option("--name", default=None, help="a label to recognise the token by")
@pass_ctx
@handle_errors
def tokens_create(ctx: Ctx, account: str, permissions: tuple[str, ...], name: str | None) -> None:
    """Create an API token; it is printed once."""
    from transom.tokens import by_secret

    with ctx.db() as db:
        token = directory.create_token(
            db, account=directory.get_account(db, name=account), permissions=list(permissions), name=name
        )
        token_id = by_secret(db, secret=token).id
    click.echo(f"token created (id {token_id}, for `transom tokens revoke`); it is shown once and stored hashed:")
    click.echo(token)


@tokens.command("list")
@account_option
@json_option
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
@account_option
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
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on (0.0.0.0: all)")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="worker processes; metrics and sessions are shared between them")
@click.option("--graceful-timeout", default=30, show_default=True, type=click.IntRange(0, 3600),
              help="on SIGTERM/SIGINT, seconds to let requests in flight finish before closing them")
@click.option("--proxy-headers/--no-proxy-headers", default=False, show_default=True,
              help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy)")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
              help="comma-separated proxy addresses whose X-Forwarded-* headers are trusted")
@pass_ctx
@handle_errors
def serve(ctx: Ctx, host: str, port: int, workers: int, graceful_timeout: int, proxy_headers: bool,
          forwarded_allow_ips: str) -> None:
    """Run the HTTP host: applies pending migrations, prints a start-up summary, then serves
    until SIGTERM, which stops accepting connections and lets requests in flight finish."""
    import uvicorn

    from transom import logs, metrics

    # Before anything records a metric: the workers share their values through this directory.
    metrics_dir, created = metrics.prepare_multiprocess_dir()
    try:
        ctx.require_file = True
        config, _ = ctx.checked_config()
        if config.server.session_secret is None:
            fail('server.session_secret: not set; use session_secret = { env = "TRANSOM_SESSION_SECRET" }')
        database = Database(config.server.database_url)
        try:
            upgrade(database.engine)
        finally:
            database.dispose()
        if config.path is not None:
            os.environ["TRANSOM_CONFIG"] = str(config.path.resolve())
        log_config = logs.logging_config(config.server.log_level, config.server.log_format)
        logs.configure(config.server.log_level, config.server.log_format)
        # uvicorn drains on SIGTERM, then re-raises the signal to the handler it found: make
        # that a normal exit, so the finally below still removes the metrics directory
        signal.signal(signal.SIGTERM, _exit_after_drain)
        signal.signal(signal.SIGINT, _exit_after_drain)
        # stdout: stderr carries only log lines (all JSON under log_format = "json")
        click.echo(startup_summary(config, host=host, port=port, workers=workers))
        extra: dict[str, Any] = {}
        if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
            # uvicorn restarts a worker that does not answer its supervisor in time (5 s by
            # default); a worker still importing on a loaded machine is not a hung one
            extra["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
        options: dict[str, Any] = dict(
            factory=True, host=host, port=port, workers=workers, log_level=config.server.log_level.lower(),
            log_config=log_config, timeout_graceful_shutdown=graceful_timeout, proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips, **extra)
        if workers == 1:
            uvicorn.run("transom.web.asgi:create", **options)
        else:
            _run_workers(uvicorn.Config("transom.web.asgi:create", **options))
    finally:
        metrics.cleanup_multiprocess_dir(metrics_dir, created)


def _run_workers(config: Any) -> None:
    """``uvicorn.run`` with ``--workers N``, except that the supervisor closes its copy of
    the listening socket when SIGTERM arrives. uvicorn's supervisor keeps it open until the
    workers have drained: the kernel then goes on completing handshakes that no worker will
    ever accept (they are reset when the supervisor exits), so a load balancer sees a host
    that takes connections and never answers. Closed, a new connection is refused at once
    while the requests in flight finish (tests/test_operations_serve.py)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    class ClosingSupervisor(Multiprocess):
        def terminate_all(self) -> None:
            for sock in self.sockets:
                sock.close()  # the workers close their own copies as they start draining
            super().terminate_all()

    supervisor: Any = ClosingSupervisor  # its parameters changed across uvicorn versions
    sock = config.bind_socket()
    try:
        if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn
            supervisor(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
        else:
            supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()


def _exit_after_drain(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def startup_summary(config: Config, *, host: str, port: int, workers: int) -> str:
    from sqlalchemy.engine import make_url

    server = config.server
    connectors = ", ".join(f"{c.id} ({c.type}/{c.protocol}, account {c.account})"
                           for c in config.connectors.values()) or "none"
    lines = [
        f"transom {_version()} serving {server.base_url} on {host}:{port} with {workers} worker(s)",
        f"  config:     {config.path}",
        f"  database:   {make_url(server.database_url).render_as_string(hide_password=True)}",
        f"  connectors: {connectors}",
        f"  logs:       {server.log_format}, level {server.log_level}",
        "  metrics:    " + ("off" if not server.metrics_enabled else
                            "/metrics" + (" (bearer token)" if server.metrics_token else " (open: restrict it at the "
                                          "proxy, see docs/operations.md)")),
    ]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transom")
    except PackageNotFoundError:
        return "0"


for _command in list(main.commands.values()):
    with_config_option(_command)


if __name__ == "__main__":
    main()
