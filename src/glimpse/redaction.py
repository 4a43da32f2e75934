"""Credentials out of what is shown: URLs as messages, log lines and API answers may show them.

The lowest layer: plain text functions, imported by the logging set-up (every line a process writes)
and by the domain (task messages, refusals, the task input the API shows).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote_plus

__all__ = ["REDACTED", "redact_text", "redact_url"]

#: What a redacted credential is replaced with.
REDACTED: Final = "***"
#: ``//userinfo@``: the user information of a URL, which may hold a password or a token.
_USERINFO = re.compile(r"//[^/?#]*@")
#: Names of query parameters that carry credentials: presigned S3 (``X-Amz-Signature``,
#: ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``Signature``, ``AWSAccessKeyId``), Swift temporary
#: URLs (``temp_url_sig``), Google Cloud Storage (``X-Goog-Signature``), Azure SAS (``sig``), OAuth
#: (``access_token``) and the plain ``password``, ``secret``, ``key`` or ``auth`` of home-made servers.
_SECRET_PARAMETER = re.compile(r"sig|token|credential|secret|passw|key|auth", re.IGNORECASE)


def _redact_query(query: str) -> str:
    fields = []
    for field_ in re.split(r"([&;])", query):
        name, equals, _value = field_.partition("=")
        if equals and _SECRET_PARAMETER.search(unquote_plus(name)):
            field_ = f"{name}={REDACTED}"
        fields.append(field_)
    return "".join(fields)


def redact_url(url: str) -> str:
    """``url`` without its credentials: the user information (``user:password@``) becomes ``***@`` and
    the value of every query parameter that carries one (a presigned URL's signature, credential and
    security token, a ``token`` or ``password``) becomes ``***``; everything else is kept as written,
    so the URL still says where it points. Works on any text, parseable or not."""
    url = _USERINFO.sub(f"//{REDACTED}@", url, count=1)
    base, hash_mark, fragment = url.partition("#")
    path, question_mark, query = base.partition("?")
    if question_mark:
        base = f"{path}?{_redact_query(query)}"
    return f"{base}{hash_mark}{fragment}"


#: A URL inside free text: a scheme, ``://``, then everything up to a space, a quote or an angle bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`)."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text) if "://" in text else text
