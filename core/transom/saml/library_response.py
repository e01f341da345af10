"""python3-saml's ``OneLogin_Saml2_Response`` over the tree Transom already parsed, and its
attributes read without the per-value detours (issue 13: one decode and one parse per ACS).

``OneLogin_Saml2_Response(settings, b64)`` base64-decodes the posted text and parses it with
``OneLogin_Saml2_XML.to_etree``, which ``precheck_document`` has just done on the same bytes:

* the bytes are the same: ``decode_saml_response`` decodes the posted text strictly
  (``validate=True``, blanks removed first), and the library's lenient ``b64decode`` of text
  that passed the strict check gives the same bytes;
* the parse is the same: ``precheck_document`` calls the very function the library calls,
  ``OneLogin_Saml2_XML.to_etree`` (python3-saml's hardened, thread-local parser: no DTD, no
  entities, no network, comments and processing instructions removed);
* ``precheck_document`` only reads the tree (``find``, ``iter``, ``get``), so the library
  receives it as a fresh parse would leave it. What the library itself changes while it
  validates (``xmlsec.tree.add_ids``) it changed before on its own tree, which
  ``_after_library`` already read.

:func:`library_response` therefore sets the attributes ``__init__`` sets, from the bytes and
the tree instead of decoding and parsing again; tests/test_saml_library_patches.py compares
it with the stock constructor on every kind of response the attack tests build and pins the
source of ``__init__`` (an upgrade that changes it fails there).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

_ATTRIBUTE_VALUE = f"{{{OneLogin_Saml2_Constants.NS_SAML}}}AttributeValue"
_NAME_ID = f"{{{OneLogin_Saml2_Constants.NS_SAML}}}NameID"
#: lxml's own iterchildren: python3-saml's RestrictedElement wraps it in a Python generator
#: that drops comments, processing instructions and entities, which a tag filter never yields
_iterchildren = etree.ElementBase.iterchildren


def library_response(settings: OneLogin_Saml2_Settings, xml: bytes, root: Any) -> OneLogin_Saml2_Response:
    """What ``OneLogin_Saml2_Response(settings, base64(xml))`` builds, given ``root``, the
    result of ``OneLogin_Saml2_XML.to_etree(xml)`` (see the module docstring)."""
    response: OneLogin_Saml2_Response = OneLogin_Saml2_Response.__new__(OneLogin_Saml2_Response)
    # the attributes of OneLogin_Saml2_Response.__init__, in its order
    response._settings = settings
    response._error = None
    response.response = xml
    response.document = root
    response.decrypted_document = None
    response.encrypted = None
    response.valid_scd_not_on_or_after = None
    # precheck_document refuses encrypted assertions before this runs; kept as __init__ has it
    if response._query("/samlp:Response/saml:EncryptedAssertion"):
        response.encrypted = True
        response.decrypted_document = response._decrypt_assertion(deepcopy(root))
    return response


def library_attributes(response: OneLogin_Saml2_Response) -> dict[str, list[Any]]:
    """What ``response.get_attributes()`` returns (or raises), cheaper for many values.

    The stock loop calls ``OneLogin_Saml2_XML.element_text`` (``etree.strip_tags`` of comments,
    then ``.text``) and looks for nested NameIDs on every AttributeValue. A value without
    child nodes has no comment to strip and no NameID: its ``.text`` is what ``element_text``
    returns. A value with children (a nested NameID; a comment, which the hardened parser
    never leaves) takes the stock steps unchanged."""
    allow_duplicates = response._settings.get_security_data().get("allowRepeatAttributeName", False)
    attributes: dict[str, list[Any]] = {}
    for attribute_node in response._query_assertion("/saml:AttributeStatement/saml:Attribute"):
        attr_key = attribute_node.get("Name")
        if not attr_key:
            continue
        if not allow_duplicates and attr_key in attributes:
            raise OneLogin_Saml2_ValidationError(
                "Found an Attribute element with duplicated Name",
                OneLogin_Saml2_ValidationError.DUPLICATED_ATTRIBUTE_NAME_FOUND,
            )
        values: list[Any] = []
        for value in _iterchildren(attribute_node, _ATTRIBUTE_VALUE):
            if len(value) == 0:
                text = value.text
                if text:
                    text = text.strip()
                    if text:
                        values.append(text)
                continue
            text = OneLogin_Saml2_XML.element_text(value)
            if text:
                text = text.strip()
                if text:
                    values.append(text)
            for name_id in value.iterchildren(_NAME_ID):
                values.append({"NameID": {
                    "Format": name_id.get("Format"),
                    "NameQualifier": name_id.get("NameQualifier"),
                    "value": name_id.text,
                }})
        if attr_key in attributes:
            attributes[attr_key].extend(values)
        else:
            attributes[attr_key] = values
    return attributes
