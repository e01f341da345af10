"""``transom explain``: what an IdP sent and what a login would do with it, without writing.

The operator pastes the id_token (from the ``idp-callback`` request in the browser's network
tab) or the SAMLResponse (from a SAML tracer) into a file. Explain then:

1. verifies it with the core's own checks (``oidc.verify_id_token`` / ``saml.verify_saml_response``)
   when it can, and otherwise says **UNVERIFIED** loudly and why;
2. shows the claims received and the :class:`~transom.connector.Claims` the plugin extracted;
3. runs the login pipeline's public dry run (:func:`transom.login.preview_login`, the same
   code as ``complete_login`` in a transaction that is always rolled back; a guard refuses
   any commit), and reports the changes as the audit events the login would write, the
   trace, and the user afterwards.

An UNVERIFIED payload goes through :func:`transom.login.preview_unverified` instead, which
never calls an IdP API (no Graph overage lookup on behalf of a payload nobody verified).

Decisions (docs/explain.md): time checks are reported, not fatal (a captured token is usually
expired by the time someone explains it); the OIDC nonce cannot be checked (there is no
login in flight), so the token's own nonce is used; the SAML InResponseTo binding and replay
cache are skipped for the same reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn, Protocol

import click
from sqlalchemy.exc import SQLAlchemyError

from transom import oidc, saml
from transom.config import Config
from transom.connector import Claims, Connector
from transom.errors import BadRequest, TransomError, UpstreamError
from transom.login import LoginPreview, preview_login, preview_unverified
from transom.oidc.discovery import resolve, verify_with_discovery
from transom.provisioning import LoginPreview as ProvisioningPreview
from transom.runtime import Runtime
from transom.verified import ProtocolFacts, verified_login

VERIFIED = "verified"
UNVERIFIED = "UNVERIFIED"
#: a pasted token or response bigger than this is not one
MAX_INPUT_BYTES = 1024 * 1024


# -- reading the input ----------------------------------------------------------------------


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def decode_jwt_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, for display only."""
    parts = token.split(".")
    if len(parts) != 3:
        raise BadRequest("the id_token is not a JWT (expected three dot-separated parts)")
    try:
        header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("the id_token's header or payload is not base64url JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise BadRequest("the id_token's header and payload must be JSON objects")
    return header, claims


def read_id_token(text: str) -> str:
    """The token itself, also from a pasted ``id_token=...`` form body."""
    value = text.strip()
    if "id_token=" in value:
        found = urllib.parse.parse_qs(value).get("id_token") or urllib.parse.parse_qs(value.split("?", 1)[-1]).get(
            "id_token"
        )
        if found:
            value = found[0].strip()
    return value


def read_saml_response(text: str) -> str:
    """Base64 SAMLResponse from a pasted value: the base64 itself, a form body
    ``SAMLResponse=...`` (URL-encoded), or the decoded XML."""
    value = text.strip()
    if value.startswith("<"):
        return base64.b64encode(value.encode("utf-8")).decode("ascii")
    if "SAMLResponse=" in value:
        found = urllib.parse.parse_qs(value).get("SAMLResponse")
        if found:
            return found[0].strip()
    return value


# -- verification ---------------------------------------------------------------------------


#: what an inspection returns: the verification report, the payload, and the protocol facts
#: of a verified payload (``None``: not verified, so no IdP API may be called for it)
Inspection = tuple[dict[str, Any], dict[str, Any], ProtocolFacts | None]


def inspect_id_token(runtime: Runtime, connector: Connector, token: str) -> Inspection:
    """Returns (verification report, claims, facts). Signature, issuer, audience and tenant are
    checked by ``oidc.verify_id_token`` as at the token's issue time; the time checks are
    then repeated for now and reported separately."""
    header, unverified = decode_jwt_unverified(token)
    report: dict[str, Any] = {"header": header}
    nonce = unverified.get("nonce") if isinstance(unverified.get("nonce"), str) else None
    issued = unverified.get("iat")
    at = float(issued) if isinstance(issued, int | float) and not isinstance(issued, bool) else time.time()
    skew = runtime.config.server.clock_skew_seconds
    try:
        declared = runtime.plugins.oidc_provider(connector)
        provider = resolve(runtime.http, runtime.discovery, declared)
        claims = verify_with_discovery(token, provider=declared, http=runtime.http, jwks=runtime.jwks,
                                       discovery=runtime.discovery, nonce=nonce, clock_skew_seconds=skew, now=at)
    except UpstreamError as exc:
        report.update(status=UNVERIFIED, detail=f"the provider's keys could not be loaded: {exc.message}")
        return report, unverified, None
    except TransomError as exc:
        report.update(status=UNVERIFIED, detail=_refusal(exc))
        return report, unverified, None
    report.update(
        status=VERIFIED,
        detail=f"{header.get('alg')} signature verified with the provider's key "
        f"(kid {header.get('kid')!s}); issuer, audience and tenant match the connector",
    )
    try:
        oidc.check_claims(claims, provider=provider, nonce=nonce, clock_skew_seconds=skew, now=time.time())
        report["login_now"] = "would be accepted (nonce not checked: no login in flight)"
    except TransomError as exc:
        report["login_now"] = f"would be refused now: {_refusal(exc)}"
    kid = header.get("kid")
    facts = ProtocolFacts(protocol="oidc", issuer=claims.get("iss"), subject=claims.get("sub"),
                          key_id=kid if isinstance(kid, str) else None)
    return report, claims, facts


def inspect_saml_response(runtime: Runtime, connector: Connector, saml_response: str) -> Inspection:
    """Returns (verification report, SAML payload, facts). A response that fails any check (often
    just its age) is decoded without verification, and says so."""
    report: dict[str, Any] = {}
    try:
        verified = saml.verify_saml_response(runtime, connector, saml_response)
    except TransomError as exc:
        report.update(status=UNVERIFIED, detail=f"a login would refuse this response: {_refusal(exc)}")
        xml = saml.decode_saml_response(saml_response)
        return report, unverified_saml_payload(saml.precheck_document(xml)), None
    report.update(
        status=VERIFIED,
        detail="signature, issuer, audience, recipient and time checks passed "
        "(InResponseTo binding and replay cache not checked: no login in flight)",
        login_now="would be accepted",
    )
    payload = verified.payload
    facts = ProtocolFacts(protocol="saml", issuer=payload.get("issuer"), subject=payload.get("name_id"),
                          session_index=payload.get("session_index"), name_id_format=payload.get("name_id_format"),
                          assertion_id=verified.assertion_id)
    return report, payload, facts


_SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"


def unverified_saml_payload(root: Any) -> dict[str, Any]:
    """NameID, issuer and attributes read from a hardened-parsed Response, for display."""
    assertion = root.find(f"{_SAML}Assertion")
    if assertion is None:
        raise BadRequest("the SAML response carries no (unencrypted) Assertion")
    name_id = assertion.find(f"{_SAML}Subject/{_SAML}NameID")
    issuer = assertion.find(f"{_SAML}Issuer")
    attributes: dict[str, list[str]] = {}
    for attribute in assertion.iter(f"{_SAML}Attribute"):
        name = attribute.get("Name")
        if name:
            values = ["".join(v.itertext()).strip() for v in attribute.findall(f"{_SAML}AttributeValue")]
            attributes.setdefault(name, []).extend(values)
    return {
        "name_id": "".join(name_id.itertext()).strip() if name_id is not None else None,
        "name_id_format": name_id.get("Format") if name_id is not None else None,
        "issuer": "".join(issuer.itertext()).strip() if issuer is not None else None,
        "attributes": attributes,
    }


def _refusal(exc: TransomError) -> str:
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message


# -- the dry run ----------------------------------------------------------------------------


def claims_json(claims: Claims) -> dict[str, Any]:
    data = asdict(claims)
    data["groups"] = {
        "state": claims.groups.state.value,
        "ids": list(claims.groups.ids),
        "source": claims.groups.source,
    }
    for key in ("space_names", "space_roles", "account_roles"):
        data[key] = list(data[key])
    return data


def dry_run_login(
    runtime: Runtime, connector: Connector, payload: Mapping[str, Any], *, facts: ProtocolFacts | None
) -> dict[str, Any]:
    """The login pipeline's dry run for this payload, as report fields. Never writes. With
    ``facts`` (the payload was verified) it is a ``VerifiedLogin`` and may reach the IdP's
    API like a login; without, it goes through ``preview_unverified``, which never does."""
    if facts is not None:
        preview = preview_login(runtime, verified_login(runtime, connector, payload, facts=facts))
    else:
        preview = preview_unverified(runtime, connector, payload)
    return _preview_json(preview)


def _preview_json(preview: LoginPreview) -> dict[str, Any]:
    out: dict[str, Any] = {"extracted": claims_json(preview.claims)}
    if preview.provisioning is not None:
        out["rules"] = _rules_json(preview.provisioning)
    elif preview.provisioning_error is not None:
        out["rules"] = {"error": _refusal(preview.provisioning_error)}
    if preview.refused is not None:
        out["login"] = {"outcome": "refused", "reason": _refusal(preview.refused)}
    elif preview.result is not None:
        out["login"] = {
            "outcome": "would create the user" if preview.result.created else "would log in the user",
            "user_after": preview.user_after,
        }
    out["changes"] = [{"action": action, "details": details} for action, details in preview.changes]
    out["trace"] = {"notes": preview.trace.notes, "warnings": preview.trace.warnings}
    return out


def _rules_json(preview: ProvisioningPreview) -> dict[str, Any]:
    return {
        "spaces": [{"space": a.space, "role": a.role} for a in preview.spaces.assignments],
        "spaces_origin": preview.spaces.origin,
        "space_notes": list(preview.spaces.notes),
        "account_role": preview.account_role.role,
        "timezone": preview.timezone,
        "warnings": preview.warnings,
    }


def explain(
    runtime: Runtime, *, connector_id: str, id_token: str | None = None, saml_response: str | None = None
) -> dict[str, Any]:
    """The whole report as a JSON-able dict (``--json`` prints exactly this)."""
    connector = runtime.connector(connector_id)
    if (id_token is None) == (saml_response is None):
        raise BadRequest("give exactly one of --id-token or --saml-response")
    if id_token is not None:
        if connector.protocol != "oidc":
            raise BadRequest(f"connector '{connector.id}' speaks {connector.protocol}; use --saml-response")
        verification, payload, facts = inspect_id_token(runtime, connector, read_id_token(id_token))
    else:
        assert saml_response is not None
        if connector.protocol != "saml":
            raise BadRequest(f"connector '{connector.id}' speaks {connector.protocol}; use --id-token")
        verification, payload, facts = inspect_saml_response(runtime, connector, read_saml_response(saml_response))
    report: dict[str, Any] = {
        "connector": {
            "id": connector.id,
            "type": connector.type,
            "protocol": connector.protocol,
            "account": connector.account,
        },
        "verification": verification,
        "received": payload,
    }
    try:
        report.update(dry_run_login(runtime, connector, payload, facts=facts))
    except TransomError as exc:
        report["login"] = {"outcome": "refused", "reason": _refusal(exc)}
    return report


# -- output ---------------------------------------------------------------------------------


def render_text(report: Mapping[str, Any], echo: Callable[[str], None]) -> None:
    conn = report["connector"]
    verification = report["verification"]
    echo(f"connector {conn['id']} ({conn['type']}, {conn['protocol']}) -> account {conn['account']}")
    if verification["status"] == VERIFIED:
        echo(f"VERIFIED: {verification['detail']}")
        echo(f"  login now: {verification.get('login_now', '-')}")
    else:
        banner = "!" * 72
        echo(banner)
        echo("!! UNVERIFIED: nothing below is proven to come from the IdP")
        echo(f"!! {verification['detail']}")
        echo(banner)
    echo("\nreceived:")
    for key, value in sorted(report["received"].items()):
        echo(f"  {key}: {json.dumps(value, ensure_ascii=False, default=str)}")
    if "extracted" in report:
        echo("\nextracted by the plugin:")
        for key, value in report["extracted"].items():
            echo(f"  {key}: {json.dumps(value, ensure_ascii=False, default=str)}")
    rules = report.get("rules", {})
    if "spaces" in rules:
        echo("\nprovisioning rules:")
        spaces = ", ".join(f"{s['space']} ({s['role']})" for s in rules["spaces"]) or "none"
        echo(f"  spaces: {spaces}  [origin: {rules['spaces_origin']}]")
        echo(f"  account role: {rules['account_role'] or 'unchanged'}")
        echo(f"  timezone: {rules['timezone'] or 'unchanged'}")
        for note in rules["space_notes"]:
            echo(f"  - {note}")
        for warning in rules["warnings"]:
            echo(f"  WARNING {warning}")
    login = report.get("login", {})
    echo(f"\nlogin: {login.get('outcome', '-')}" + (f": {login['reason']}" if "reason" in login else ""))
    changes = report.get("changes", [])
    echo("changes a login would make:" if changes else "changes a login would make: none")
    for change in changes:
        echo(f"  {change['action']}: {json.dumps(change['details'], ensure_ascii=False, default=str)}")
    trace = report.get("trace", {})
    for note in trace.get("notes", []):
        echo(f"  trace: {note}")
    for warning in trace.get("warnings", []):
        echo(f"  trace WARNING: {warning}")
    if "user_after" in login:
        echo("\nuser after the login:")
        echo(json.dumps(login["user_after"], indent=2, ensure_ascii=False))
    echo("\n(nothing was written)")


def _read_input(path: str) -> str:
    data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1) if path == "-" else Path(path).read_bytes()
    if len(data) > MAX_INPUT_BYTES:
        raise BadRequest(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{path}: not UTF-8 text") from exc


class _HasConfig(Protocol):
    """What the ``transom`` group puts in ``ctx.obj`` (``transom.cli.Ctx``); not imported,
    because ``transom.cli`` imports this module to register the command."""

    @property
    def config(self) -> Config: ...


@click.command("explain")
@click.option("--connector", "connector_id", required=True, help="connector id from the config")
@click.option(
    "--id-token",
    "id_token_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="file holding the id_token (or '-' for stdin)",
)
@click.option(
    "--saml-response",
    "saml_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="file holding the SAMLResponse (base64, form body or XML; '-' for stdin)",
)
@click.option("--json", "as_json", is_flag=True, help="print only the report, as JSON")
@click.pass_obj
def command(
    obj: _HasConfig, connector_id: str, id_token_file: str | None, saml_file: str | None, as_json: bool
) -> None:
    """Decode what an IdP sent and show what a login would do with it; writes nothing."""
    try:
        if (id_token_file is None) == (saml_file is None):
            raise BadRequest("give exactly one of --id-token FILE or --saml-response FILE")
        # The trace's warnings are in the report; keep stderr for errors only.
        logging.getLogger("transom").setLevel(logging.ERROR)
        runtime = Runtime.build(obj.config)
        try:
            report = explain(
                runtime,
                connector_id=connector_id,
                id_token=_read_input(id_token_file) if id_token_file else None,
                saml_response=_read_input(saml_file) if saml_file else None,
            )
        finally:
            runtime.close()
    except TransomError as exc:
        _fail(exc.message)
    except (OSError, SQLAlchemyError) as exc:  # unreadable file, database not reachable/migrated
        _fail(f"{type(exc).__name__}: {exc}".splitlines()[0])
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        render_text(report, click.echo)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
