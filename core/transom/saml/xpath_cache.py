"""The python3-saml XPath patch (issue 13): ``OneLogin_Saml2_XML.query`` compiles its XPath
expression on every call (``element.xpath(...)``), 46 times per ACS; this keeps one compiled
``etree.XPath`` per expression and thread and evaluates that instead.

Same evaluation: ``element.xpath(q, namespaces=N, **vars)`` is lxml's
``XPathElementEvaluator(element, namespaces=N)(q, **vars)``, and ``etree.XPath(q,
namespaces=N)(element, **vars)`` evaluates the same compiled expression with the same
namespaces, variables, context node and defaults (smart strings, regular expressions, no
extensions). Anything else takes the stock function: an expression that does not compile
(so the caller sees the stock error), a source that is not an element, a full cache.
Compiled XPath objects serialise their evaluations behind a lock: one set per thread keeps
worker threads from queueing on it. tests/test_saml_library_patches.py compares the two on
every expression python3-saml uses, over documents of every shape the attack tests build.
"""

from __future__ import annotations

import threading
from typing import Any

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

#: python3-saml's own query, kept for the fallback, the equivalence test and the benchmark
STOCK_QUERY = OneLogin_Saml2_XML.query
#: python3-saml's expressions are constants (ids go in as the ``$tagid`` variable); the cap
#: only bounds memory should a caller ever build expressions from input
MAX_CACHED_PER_THREAD = 256
_local = threading.local()
_patch_lock = threading.Lock()
_patched = False


def _compiled(query: str) -> etree.XPath | None:
    cache: dict[str, etree.XPath] | None = getattr(_local, "xpaths", None)
    if cache is None:
        cache = {}
        _local.xpaths = cache
    found = cache.get(query)
    if found is None:
        if len(cache) >= MAX_CACHED_PER_THREAD:
            return None
        try:
            found = etree.XPath(query, namespaces=OneLogin_Saml2_Constants.NSMAP)
        except etree.XPathError:
            return None
        cache[query] = found
    return found


def cached_query(dom: Any, query: str, context: Any = None, tagid: str | None = None) -> Any:
    """Same contract as ``OneLogin_Saml2_XML.query``: the nodes (or value) the expression
    selects from ``context`` (``dom`` when ``None``), with ``$tagid`` bound when given."""
    source = dom if context is None else context
    compiled = _compiled(query) if isinstance(source, etree._Element) and isinstance(query, str) else None
    if compiled is None:
        return STOCK_QUERY(dom, query, context, tagid)
    if tagid is None:
        return compiled(source)
    return compiled(source, tagid=tagid)


def install_xpath_cache() -> None:
    """Apply the patch once per process. Re-check on python3-saml upgrades (the test fails
    if ``query`` changes)."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        OneLogin_Saml2_XML.query = staticmethod(cached_query)
        _patched = True


install_xpath_cache()
