"""Scrub secrets from text that is stored or shown: error messages, HTTP bodies, reasons.

    >>> scrub("HTTP 401: bad key sk-proj-abcdefghijklmnopqrstuvwx")
    'HTTP 401: bad key [SECRET]'
    >>> scrub("https://bob:hunter2@judge.example/v1 said: invalid key abc123", known=["abc123"])
    'https://bob:[SECRET]@judge.example/v1 said: invalid key [SECRET]'

What is replaced with `[SECRET]`:

- every value in `known` (at least 4 characters), e.g. the judge's API key read from the
  environment; `from_env()` lists the values worth passing (named variables, and any
  variable whose name says KEY, TOKEN, SECRET, PASSWORD or CREDENTIAL);
- vendor key shapes (OpenAI/Anthropic `sk-…`, AWS `AKIA…`, GitHub, Slack, Google, Hugging
  Face, JWTs): the patterns of `signals.pii`, which the dataset export redacts with;
- `Authorization:` header values (Bearer, Basic, Token or bare) and `Bearer <token>`;
- `key=value` / `"key": "value"` pairs whose key names a secret (api_key, access_token,
  token, secret, password, x-api-key, ...), and `?key=` / `&sig=` URL query values;
- the password of a URL's user-info (`scheme://user:PASSWORD@host`).

Use it on every error a store row or a page keeps: the text is written once and read by
everyone who opens the dashboard, while the process's environment is not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from signals.pii import _SECRET as VENDOR_KEYS

MARK = "[SECRET]"

_SECRET_NAME = r"(?:api[_-]?key|apikey|x-api-key|access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token" \
               r"|client[_-]?secret|secret[_-]?key|secret|token|password|passwd|pwd|private[_-]?key)"
_AUTH_HEADER = re.compile(
    r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest)\s+)?)"
    r"(?!\[SECRET\]|(?:bearer|basic|token|digest)\b)[^\s\"',;}\]]+")
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_PAIR = re.compile(rf"(?i)(\b{_SECRET_NAME}[\"']?\s*[:=]\s*[\"']?)(?![\"'\s]|\[SECRET\])[^\s\"'&,;}}\]]+")
_QUERY = re.compile(r"(?i)([?&](?:key|sig|signature|code|auth)=)(?!\[SECRET\])[^&\s#\"']+")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+(@)")
_ENV_NAME = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)")


def scrub(text: str, *, known: Iterable[str] = ()) -> str:
    """`text` with API keys, tokens, bearer headers, URL passwords and every `known` value
    replaced by `[SECRET]`. None and empty text come back as they are."""
    if not text:
        return text
    text = str(text)
    for value in sorted({str(k) for k in known if k and len(str(k)) >= 4}, key=len, reverse=True):
        text = text.replace(value, MARK)
    text = VENDOR_KEYS.sub(MARK, text)
    for pattern in (_AUTH_HEADER, _BEARER, _PAIR, _QUERY):
        text = pattern.sub(lambda m: m.group(1) + MARK, text)
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MARK + m.group(2), text)


def scrub_all(values, *, known: Iterable[str] = ()):
    """`scrub` applied to every string in a list, dict or nested mix of them."""
    known = list(known)
    if isinstance(values, str):
        return scrub(values, known=known)
    if isinstance(values, dict):
        return {k: scrub_all(v, known=known) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return type(values)(scrub_all(v, known=known) for v in values)
    return values


def from_env(*names: str | None) -> list[str]:
    """Values of the named environment variables, and of every variable whose name says
    KEY, TOKEN, SECRET, PASSWORD or CREDENTIAL (values under 8 characters are left out:
    too short to be a key, too likely to be a common word)."""
    out = [os.environ[n] for n in names if n and os.environ.get(n)]
    out += [v for k, v in os.environ.items() if _ENV_NAME.search(k) and v and len(v) >= 8]
    return out
