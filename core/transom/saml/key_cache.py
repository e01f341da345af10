"""The python3-saml key patch (issue 13): ``OneLogin_Saml2_Utils.validate_node_sign`` loads the
IdP certificate into an xmlsec key (``xmlsec.Key.from_memory(cert, CERT_PEM, None)``: PEM
decode, X.509 parse, public key extraction) on every signature check; this keeps one loaded
key per exact certificate text and thread and hands that out instead.

No python3-saml code is copied: its functions run as shipped. Only the name ``xmlsec`` in
``onelogin.saml2.utils`` is replaced by a view of the real module whose ``Key.from_memory``
answers from the cache for a certificate (``CERT_PEM``, no password); every other name, and
every other key format (private keys for signing), is the real module's.

Why a loaded key may be handed out again: python3-saml never keeps or changes the key it
loads; it passes it straight to ``SignatureContext.key = ...`` (validate_node_sign,
validate_binary_sign) or ``KeysManager.add_key(...)`` (generate_name_id), and python-xmlsec
gives both a copy (``xmlSecKeyDuplicate``), so what a verification does to its context's key
never reaches the cached one, and no verdict is kept: each check runs xmlsec's verify in
full. The cache is per thread, so a loaded key is only ever read by the thread that loaded
it. A certificate that does not load raises as before and is not cached.
tests/test_saml_library_patches.py compares the verdicts with python3-saml as shipped over
the attack documents and pins the sources that call ``from_memory``.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

import xmlsec
from onelogin.saml2 import utils as _onelogin_utils

#: the real module and loader, kept for the fallback, the equivalence test and the benchmark
STOCK_XMLSEC = xmlsec
STOCK_FROM_MEMORY: Callable[..., Any] = xmlsec.Key.from_memory
#: a connector has a few certificates (rollover); the cap bounds memory should certificates
#: keep changing (metadata refreshes): a full cache is emptied and refilled
MAX_CACHED_PER_THREAD = 64
_local = threading.local()
_patch_lock = threading.Lock()
_patched = False


def cached_from_memory(data: Any, format: Any, password: Any = None) -> Any:
    """Same contract as ``xmlsec.Key.from_memory``: a key loaded from ``data``. A certificate
    without password comes from this thread's cache (loaded by the stock function on a miss);
    anything else is loaded by the stock function every time."""
    # KeyDataFormatCertPem is xmlsec.KeyFormat.CERT_PEM, the format python3-saml loads certificates in
    if format != xmlsec.constants.KeyDataFormatCertPem or password is not None or not isinstance(data, str | bytes):
        return STOCK_FROM_MEMORY(data, format, password)
    cache: dict[tuple[type, str | bytes], Any] | None = getattr(_local, "keys", None)
    if cache is None:
        cache = {}
        _local.keys = cache
    # the type is part of the key: str and bytes of the same text are loaded apart, as given
    entry = (type(data), data)
    key = cache.get(entry)
    if key is None:
        key = STOCK_FROM_MEMORY(data, format, None)
        if len(cache) >= MAX_CACHED_PER_THREAD:
            cache.clear()
        cache[entry] = key
    return key


class _Key:
    """``xmlsec.Key`` as python3-saml's utils module sees it: ``from_memory`` cached, the rest
    the real class's."""

    from_memory = staticmethod(cached_from_memory)

    def __getattr__(self, name: str) -> Any:
        return getattr(STOCK_XMLSEC.Key, name)


class _XmlsecView(types.ModuleType):
    """The ``xmlsec`` module as python3-saml's utils module sees it: ``Key`` is :class:`_Key`,
    every other name the real module's."""

    Key = _Key()

    def __getattr__(self, name: str) -> Any:
        return getattr(STOCK_XMLSEC, name)


XMLSEC_VIEW = _XmlsecView("xmlsec", "xmlsec as onelogin.saml2.utils sees it (transom.saml.key_cache)")


def install_key_cache() -> None:
    """Apply the patch once per process. Re-check on python3-saml upgrades (the test fails if
    a function that loads keys changes)."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        _onelogin_utils.xmlsec = XMLSEC_VIEW
        _patched = True


install_key_cache()
