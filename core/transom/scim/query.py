"""Compiling a parsed SCIM filter to a SQLAlchemy condition on ``users``.

Column-backed attributes (``id``, ``userName``, ``externalId``, ``active``, ``meta.created``,
``meta.lastModified``) compare against ``users`` columns; every other attribute is an
``EXISTS`` over ``scim_values``, the leaf index written with each user. Every value is a
bound parameter; ``co``/``sw``/``ew`` use ``autoescape`` so ``%`` and ``_`` match
literally. Attribute names are resolved case-insensitively against the schema; an unknown
attribute, or an operator that makes no sense for its type, is 400 ``invalidFilter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, not_, or_, select, true

from transom.directory import user_name_key
from transom.models import USER_DEPROVISIONED, ScimValue, User
from transom.scim.errors import InvalidFilter
from transom.scim.filter import And, Compare, Expr, Not, Or, Present, Scalar, ValuePath
from transom.scim.resource import normalise
from transom.scim.schema import USER_SCHEMA, Attr, lookup, split_urn

_ORDERING = frozenset({"gt", "ge", "lt", "le"})
#: Core aliases of this table are much cheaper to build than ORM ``aliased()`` entities
_VALUES = ScimValue.__table__


@dataclass(frozen=True)
class Target:
    """What a filter path names: a column-backed attribute, or an indexed leaf."""

    column: str | None = None
    attr: Attr | None = None
    sub: Attr | None = None


def resolve(path: str, parent: Attr | None = None) -> Target:
    """Resolve ``path`` (``userName``, ``name.givenName``, ``urn:…:manager.value``…).
    Within a value filter, ``parent`` is the multi-valued attribute and ``path`` a
    sub-attribute."""
    if parent is not None:
        sub = parent.sub_attr(path)
        if sub is None:
            raise InvalidFilter(f"'{path}' is not a sub-attribute of {parent.name}")
        return Target(attr=parent, sub=sub)
    schema, rest = split_urn(path)
    if not schema:
        raise InvalidFilter(f"unknown schema in filter path '{path}'")
    name, _, sub_name = rest.partition(".")
    lowered = name.lower()
    if schema == USER_SCHEMA:
        if lowered in ("id", "username", "externalid", "active") and not sub_name:
            return Target(column=lowered)
        if lowered == "meta":
            if sub_name.lower() in ("created", "lastmodified", "resourcetype"):
                return Target(column=f"meta.{sub_name.lower()}")
            raise InvalidFilter(f"meta.{sub_name} cannot be filtered on")
    attr = lookup(schema, lowered)
    if attr is None or attr.returned == "never":
        raise InvalidFilter(f"'{path}' is not a filterable attribute")
    if sub_name:
        sub = attr.sub_attr(sub_name)
        if sub is None:
            raise InvalidFilter(f"'{sub_name}' is not a sub-attribute of {attr.name}")
        return Target(attr=attr, sub=sub)
    if attr.type == "complex":
        # "manager eq x", "emails eq x" (Entra, Ping): the complex attribute's "value"
        value = attr.sub_attr("value")
        if value is None:
            raise InvalidFilter(f"{attr.name} is complex: name a sub-attribute")
        return Target(attr=attr, sub=value)
    return Target(attr=attr)


def compile_filter(expr: Expr, *, account_id: str) -> ColumnElement[bool]:
    return _Compiler(account_id).compile(expr, None, None)


class _Compiler:
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id

    def compile(self, expr: Expr, parent: Attr | None, entry: Any) -> ColumnElement[bool]:
        if isinstance(expr, And):
            return and_(self.compile(expr.left, parent, entry), self.compile(expr.right, parent, entry))
        if isinstance(expr, Or):
            return or_(self.compile(expr.left, parent, entry), self.compile(expr.right, parent, entry))
        if isinstance(expr, Not):
            return not_(self.compile(expr.expr, parent, entry))
        if isinstance(expr, ValuePath):
            if parent is not None:
                raise InvalidFilter("value filters cannot be nested")
            target = resolve(expr.path)
            if target.attr is None or target.attr.type != "complex" or "." in split_urn(expr.path)[1]:
                raise InvalidFilter(f"'{expr.path}[…]' needs a complex attribute")
            row = _VALUES.alias()
            inner = self.compile(expr.filter, target.attr, row)
            # Drive the search from the index: one equality of the entry filter (preferably on
            # "value") narrows the candidate rows before the other terms are checked.
            driver = _driver(expr.filter, target.attr)
            narrowing = [] if driver is None else [row.c.sub_attribute == driver[0], row.c.value == driver[1]]
            return User.id.in_(select(row.c.user_id).where(
                row.c.account_id == self.account_id, row.c.attribute == target.attr.key, *narrowing, inner,
            ))
        target = resolve(expr.path, parent)
        if target.column is not None:
            return self.column(target.column, expr)
        return self.leaf(target, expr, entry)

    # -- users columns ------------------------------------------------------------------

    def column(self, name: str, expr: Compare | Present) -> ColumnElement[bool]:
        if name == "active":
            if isinstance(expr, Present):
                return true()
            if expr.op not in ("eq", "ne"):
                raise InvalidFilter("active is a boolean: use eq or ne")
            wanted = _as_bool(expr.value)
            is_active = User.status != USER_DEPROVISIONED
            return is_active if (wanted == (expr.op == "eq")) else not_(is_active)
        if name == "meta.resourcetype":
            if isinstance(expr, Present):
                return true()
            match = isinstance(expr.value, str) and expr.value.lower() == "user"
            return true() if match == (expr.op == "eq") else false()
        if name in ("meta.created", "meta.lastmodified"):
            when = User.created_at if name == "meta.created" else User.updated_at
            if isinstance(expr, Present):
                return true()
            if expr.op in ("co", "sw", "ew"):
                raise InvalidFilter(f"{name} is a dateTime: use eq ne gt ge lt le")
            return _compare(when, expr.op, _as_datetime(expr.value))
        col: Any
        if name == "id":
            col, value = User.id, _as_text(expr)
        elif name == "username":
            col, value = User.user_name_key, None if isinstance(expr, Present) else user_name_key(_as_text(expr) or "")
        else:
            col, value = User.external_id, _as_text(expr)
        if isinstance(expr, Present):
            return _compare(col, "pr", None)
        if value is None:
            return _compare(col, "pr" if expr.op != "eq" else "null", None)
        return _string_compare(col, expr.op, value)

    # -- indexed leaves -----------------------------------------------------------------

    def leaf(self, target: Target, expr: Compare | Present, entry: Any) -> ColumnElement[bool]:
        attr = target.attr
        assert attr is not None
        leaf = target.sub or attr
        row = _VALUES.alias()
        scope = [row.c.account_id == self.account_id, row.c.attribute == attr.key,
                 row.c.sub_attribute == (leaf.name.lower() if target.sub else "")]
        if entry is not None:
            scope += [row.c.user_id == entry.c.user_id, row.c.entry == entry.c.entry]
        if isinstance(expr, Present):
            return self._matching(entry, row, scope, None)
        if expr.value is None:  # "eq null" is "not present"
            present = self._matching(entry, row, scope, None)
            return not_(present) if expr.op == "eq" else present
        if leaf.type == "boolean":
            if expr.op not in ("eq", "ne"):
                raise InvalidFilter(f"{leaf.name} is a boolean: use eq or ne")
            value = normalise(leaf, _as_bool(expr.value))
        else:
            if isinstance(expr.value, bool):
                raise InvalidFilter(f"{leaf.name} is not a boolean")
            value = normalise(leaf, expr.value)
        if expr.op == "ne":
            return not_(self._matching(entry, row, scope, row.c.value == value))
        return self._matching(entry, row, scope, _string_compare(row.c.value, expr.op, value))

    def _matching(self, entry: Any, row: Any, scope: list[Any], condition: Any) -> ColumnElement[bool]:
        """Inside a value filter: EXISTS on the same entry. Outside: ``users.id IN`` the
        index rows that match, so the (account, attribute, sub-attribute, value) index drives
        the lookup instead of a scan of every user."""
        where = [*scope, condition] if condition is not None else scope
        if entry is not None:
            return exists(select(row.c.id).where(*where))
        return User.id.in_(select(row.c.user_id).where(*where))


def _driver(expr: Expr, attr: Attr) -> tuple[str, str] | None:
    """An ``eq`` term that every match of ``expr`` satisfies, as (sub-attribute, value)."""
    terms: list[Expr] = []

    def flatten(node: Expr) -> None:
        if isinstance(node, And):
            flatten(node.left)
            flatten(node.right)
        else:
            terms.append(node)

    flatten(expr)
    candidates = []
    for term in terms:
        if isinstance(term, Compare) and term.op == "eq" and term.value is not None:
            sub = attr.sub_attr(term.path)
            if sub is None or (sub.type == "boolean") != isinstance(term.value, bool):
                continue
            candidates.append((sub.name.lower() != "value", sub.name.lower(), normalise(sub, term.value)))
    if not candidates:
        return None
    _, sub_name, value = min(candidates)
    return sub_name, value


def _string_compare(col: Any, op: str, value: str) -> ColumnElement[bool]:
    if op == "co":
        return col.contains(value, autoescape=True)  # type: ignore[no-any-return]
    if op == "sw":
        return col.startswith(value, autoescape=True)  # type: ignore[no-any-return]
    if op == "ew":
        return col.endswith(value, autoescape=True)  # type: ignore[no-any-return]
    return _compare(col, op, value)


def _compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if op == "pr":
        result = col.is_not(None)
    elif op == "null":
        result = col.is_(None)
    elif op == "eq":
        result = col == value
    elif op == "ne":
        result = or_(col != value, col.is_(None))
    elif op == "gt":
        result = col > value
    elif op == "ge":
        result = col >= value
    elif op == "lt":
        result = col < value
    else:
        result = col <= value
    return result


def _as_text(expr: Compare | Present) -> str | None:
    if isinstance(expr, Present) or expr.value is None:
        return None
    if isinstance(expr.value, bool):
        raise InvalidFilter(f"{expr.path} is not a boolean")
    return str(expr.value)


def _as_bool(value: Scalar) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"  # Entra: roles[primary eq "True"]
    raise InvalidFilter("expected true or false")


def _as_datetime(value: Scalar) -> datetime:
    if not isinstance(value, str):
        raise InvalidFilter("expected a dateTime string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidFilter(f"'{value[:40]}' is not a dateTime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


SORTABLE = {
    "id": User.id, "username": User.user_name_key, "externalid": User.external_id,
    "meta.created": User.created_at, "meta.lastmodified": User.updated_at,
    "displayname": User.display_name, "name.givenname": User.given_name,
    "name.familyname": User.family_name, "emails.value": User.email_key, "emails": User.email_key,
}
