"""SQLAlchemy 2.0 models. Every table except ``accounts`` and ``throttle_counters`` (its
docstring says why) carries ``account_id`` so that every query can be, and is, scoped by
account. Keep ``migrations/`` in step: a test
compares this metadata with the migrated schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USER_ACTIVE = "active"
USER_PENDING = "pending"
USER_DEPROVISIONED = "deprovisioned"
SOURCE_IDP = "idp"
SOURCE_MANUAL = "manual"
ROLE_SCOPE_SPACE = "space"
ROLE_SCOPE_ACCOUNT = "account"


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Space(Base):
    __tablename__ = "spaces"
    __table_args__ = (UniqueConstraint("account_id", "name_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    #: lower-cased, trimmed name: spaces are matched case-insensitively (docs/provisioning.md)
    name_key: Mapped[str] = mapped_column(String(200))


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (
        UniqueConstraint("account_id", "scope", "name_key"),
        CheckConstraint("scope in ('space', 'account')", name="scope"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("account_id", "user_name_key"),
        Index(None, "account_id", "email_key"),
        Index(None, "account_id", "external_id"),
        # lets "account_id = ? AND id IN (SCIM filter subquery)" seek instead of scanning the account
        Index(None, "account_id", "id"),
        CheckConstraint("status in ('active', 'pending', 'deprovisioned')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user_name: Mapped[str] = mapped_column(String(320))
    #: casefolded user name; the unique key that makes concurrent creates safe
    user_name_key: Mapped[str] = mapped_column(String(320))
    email: Mapped[str | None] = mapped_column(String(320))
    email_key: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(300))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=USER_ACTIVE)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    account_role_id: Mapped[str | None] = mapped_column(
        ForeignKey("roles.id", ondelete="SET NULL")
    )
    #: set by the first SSO login; None for SCIM-pending and password users
    first_login_at: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()
    #: SCIM: the client's id for the user, and the full last-written SCIM representation
    external_id: Mapped[str | None] = mapped_column(String(320))
    scim_attributes: Mapped[dict[str, Any] | None] = mapped_column()
    #: bumped on every change; SCIM meta.version / ETag
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account_role: Mapped[Role | None] = relationship(lazy="joined")


class ScimValue(Base):
    """One leaf of a user's SCIM representation that lives in ``users.scim_attributes``
    (``emails[1].type``, ``name.givenName``, the enterprise ``manager.value``…), so that SCIM
    filters compile to indexed SQL on SQLite and PostgreSQL alike (docs/scim.md)."""

    __tablename__ = "scim_values"
    __table_args__ = (
        Index(None, "account_id", "attribute", "sub_attribute", "value"),
        # the other terms of a value filter look up the same entry of the same user
        Index(None, "user_id", "attribute", "entry", "sub_attribute", "value"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: lower-cased attribute name, URN-qualified for extensions ("emails", "urn:…:user:manager")
    attribute: Mapped[str] = mapped_column(String(200))
    #: position in a multi-valued attribute (0 for singular ones)
    entry: Mapped[int] = mapped_column(Integer)
    #: lower-cased sub-attribute name; "" for a simple attribute
    sub_attribute: Mapped[str] = mapped_column(String(64))
    #: casefolded unless the attribute is caseExact; booleans as "true"/"false"
    value: Mapped[str] = mapped_column(String(1024))


class ExternalIdentity(Base):
    __tablename__ = "external_identities"
    __table_args__ = (
        UniqueConstraint("account_id", "connector_id", "subject"),
        UniqueConstraint("user_id", "connector_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    connector_id: Mapped[str] = mapped_column(String(63))
    subject: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SpaceMembership(Base):
    __tablename__ = "space_memberships"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    space_id: Mapped[str] = mapped_column(
        ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(10), default=SOURCE_MANUAL)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (
        UniqueConstraint("account_id", "name_key"),
        UniqueConstraint("account_id", "idp_identifier"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200))
    #: the IdP's id for the group, compared exactly as the IdP sends it (docs/group-sync.md)
    idp_identifier: Mapped[str | None] = mapped_column(String(512))


class GroupMembership(Base):
    __tablename__ = "group_memberships"
    __table_args__ = (Index(None, "account_id", "user_id"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(10), default=SOURCE_MANUAL)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    #: SHA-256 of the token (tokens are 256-bit random, so a fast hash is enough)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    permissions: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "account_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    #: who: "connector:<id>", "scim:<token name>", "cli", "user:<id>"
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(32))
    connector_id: Mapped[str | None] = mapped_column(String(63))
    details: Mapped[dict[str, Any] | None] = mapped_column()


class LoginAttempt(Base):
    """One SSO login attempt as the admin console's login activity shows it: outcome, the
    refusal and its hint, warnings, what the IdP sent (verified claims or SAML attributes,
    decoded; never a raw token, assertion or signature) and what the login changed. Kept for
    a bounded time and row count per account (``server.login_activity_*``)."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index(None, "account_id", "at"),
        Index(None, "account_id", "connector_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    connector_id: Mapped[str] = mapped_column(String(63))
    protocol: Mapped[str] = mapped_column(String(8))
    #: "success" or "refused"
    outcome: Mapped[str] = mapped_column(String(10))
    #: the Transom user the login reached, when it got that far
    user_id: Mapped[str | None] = mapped_column(String(32))
    #: who the IdP said it was (user name, email or subject), for refused logins too
    user_label: Mapped[str | None] = mapped_column(String(320))
    #: the error code, message and IdP-admin hint of a refusal
    code: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(1000))
    hint: Mapped[str | None] = mapped_column(String(1000))
    warnings: Mapped[list[str] | None] = mapped_column(JSON)
    #: {"claims": {...}} (OIDC) or {"name_id": ..., "attributes": {...}} (SAML), redacted
    received: Mapped[dict[str, Any] | None] = mapped_column()
    #: {"changes": [{"action", "details"}], "notes": [...]}
    changes: Mapped[dict[str, Any] | None] = mapped_column()


class LoginState(Base):
    """Server-side, single-use state of an SSO login in flight (OIDC state, nonce and PKCE
    verifier; SAML request id)."""

    __tablename__ = "login_states"
    __table_args__ = (
        # the expiry sweep and the per-account cap (transom.purges, transom.loginstate)
        Index(None, "account_id", "expires_at"),
        # the per-browser cap on logins in flight (newest first)
        Index(None, "account_id", "browser_binding", "expires_at"),
    )

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    connector_id: Mapped[str] = mapped_column(String(63))
    protocol: Mapped[str] = mapped_column(String(8))
    nonce: Mapped[str | None] = mapped_column(String(128))
    code_verifier: Mapped[str | None] = mapped_column(String(128))
    next_path: Mapped[str | None] = mapped_column(String(2000))
    #: binds the flow to the browser that started it (hash of a cookie value)
    browser_binding: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class SamlAssertionSeen(Base):
    """Replay cache: a unique row per accepted assertion id until it expires."""

    __tablename__ = "saml_assertions_seen"
    # the expiry sweep on every ACS (transom.purges): without it the sweep scans every stored id
    __table_args__ = (Index(None, "connector_id", "expires_at"),)

    connector_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    assertion_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column()


class WebSession(Base):
    __tablename__ = "web_sessions"

    #: SHA-256 of the random session id held in the signed cookie
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    connector_id: Mapped[str | None] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class ThrottleCounter(Base):
    """One fixed-window counter of a throttle (transom.throttle, docs/security.md). The one
    table without ``account_id``: a client address is throttled across accounts (a spray over
    many accounts from one address is what that limit is for) and a login may name an account
    that does not exist. ``key`` is a SHA-256 digest of the bucket, so no email, address or
    token is stored."""

    __tablename__ = "throttle_counters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    #: Unix time (seconds) at which the current window ends
    window_ends: Mapped[int] = mapped_column(BigInteger, index=True)
