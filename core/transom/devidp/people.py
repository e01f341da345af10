"""The demo users the development IdP can sign in as, and the claims a person sends.

The picker page shows each person with editable space_name, space_role, timezone and groups,
so a newcomer can watch how Transom's provisioning rules react to what an IdP sends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

#: caps on what the picker form accepts: it is a demo, but bad input still gets a clear 400
MAX_FIELD_CHARS = 500
MAX_GROUPS = 50


@dataclass(frozen=True)
class DemoPerson:
    #: immutable subject: the OIDC ``sub`` and the SAML persistent NameID (Okta-style id)
    subject: str
    email: str
    given_name: str
    family_name: str
    space_name: str
    space_role: str
    timezone: str
    groups: tuple[str, ...]
    #: one line the picker shows: what signing in as this person demonstrates
    shows: str

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def with_choices(self, *, space_name: str, space_role: str, timezone: str, groups: str) -> DemoPerson:
        """This person with the picker's edited claims. Groups come comma- or
        newline-separated; blanks are dropped."""
        for field_name, value in (("space_name", space_name), ("space_role", space_role),
                                  ("timezone", timezone), ("groups", groups)):
            if len(value) > MAX_FIELD_CHARS:
                raise ValueError(f"{field_name} is longer than {MAX_FIELD_CHARS} characters")
        group_ids = tuple(g.strip() for g in groups.replace("\n", ",").split(",") if g.strip())
        if len(group_ids) > MAX_GROUPS:
            raise ValueError(f"at most {MAX_GROUPS} groups")
        return replace(
            self, space_name=space_name.strip(), space_role=space_role.strip(),
            timezone=timezone.strip(), groups=group_ids,
        )


#: the IdP-side group ids; the demo account maps some of them to Transom groups
GROUP_DEVOPS = "grp-devops-engineers"
GROUP_TRIAL_ADMINS = "grp-trial-admins"
GROUP_EVERYONE = "grp-everyone"

DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson(
        subject="00u1ada0000demo",
        email="ada@demo.example",
        given_name="Ada",
        family_name="Lovelace",
        space_name="Trial,DevOps",
        space_role="Space Admin,Space Developer",
        timezone="Europe/London",
        groups=(GROUP_DEVOPS, GROUP_TRIAL_ADMINS, GROUP_EVERYONE),
        shows="two spaces with a role each; two mapped groups and one the account does not know",
    ),
    DemoPerson(
        subject="00u2grace000demo",
        email="grace@demo.example",
        given_name="Grace",
        family_name="Hopper",
        space_name="Trial",
        space_role="Space Member",
        timezone="America/New_York",
        groups=(GROUP_EVERYONE,),
        shows="one space; no mapped group",
    ),
    DemoPerson(
        subject="00u3alan0000demo",
        email="alan@demo.example",
        given_name="Alan",
        family_name="Turing",
        space_name="Research,DevOps",
        space_role="Space Developer",
        timezone="Not/AZone",
        groups=(GROUP_DEVOPS,),
        shows="an unknown space (ignored), one role reused for every space, an invalid timezone",
    ),
)


#: fixed namespace so the Entra-style GUIDs are the same on every run (and in the docs)
_ENTRA_NAMESPACE = uuid.UUID("6f1c7a52-3d0e-4d7e-9a43-1b2f0c9d8e71")


def entra_object_id(value: str) -> str:
    """A stable GUID for a person or group, as Entra names every directory object."""
    return str(uuid.uuid5(_ENTRA_NAMESPACE, value))


def as_entra_person(person: DemoPerson, *, email_domain: str) -> DemoPerson:
    """How the same person looks in an Entra tenant: object-id GUIDs as subject and group ids
    (Entra sends group object ids, never names), the tenant's own email domain."""
    local = person.email.partition("@")[0]
    return replace(
        person,
        subject=entra_object_id(person.subject),
        email=f"{local}@{email_domain}",
        groups=tuple(entra_object_id(g) for g in person.groups),
    )


def find_person(subject: str, people: tuple[DemoPerson, ...] = DEMO_PEOPLE) -> DemoPerson | None:
    return next((p for p in people if p.subject == subject), None)
