"""PII redaction for exported datasets: emails, phone numbers, payment cards (Luhn-checked),
IP addresses and common API-key/token shapes.

    >>> redact("mail bob@example.com or call +1 415-555-0132")
    ('mail [EMAIL] or call [PHONE]', {'email': 1, 'phone': 1})

Precision matters as much as recall here: years (2024), prices ($19.99), version numbers
(1.2.3, v10.0.0.1), dates and times stay as they are. Patterns run in order (secrets, email,
card, ip, phone), each on the output of the previous one, so a card number is not also a phone.
"""

from __future__ import annotations

import re
from collections import Counter

_SECRET = re.compile(
    r"\b(?:"
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"          # OpenAI / Anthropic keys
    r"|AKIA[0-9A-Z]{16}"                             # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}"                   # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"                 # Slack
    r"|AIza[0-9A-Za-z_-]{35}"                        # Google API key
    r"|hf_[A-Za-z0-9]{30,}"                          # Hugging Face
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r")"
    r"|(?<=Bearer )[A-Za-z0-9._~+/=-]{20,}"         # Authorization: Bearer <token>
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\w.])(?:\d[ -]?){12,18}\d(?![\w]|\.\d)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
                   r"|(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4})(?![\w:])")
_PHONE = re.compile(r"(?<![\w.+-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w]|[.-]\d)")
_VERSION_BEFORE = re.compile(r"(?:\bv|version\s*|release\s*)$", re.IGNORECASE)


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match) -> str | None:
    digits = re.sub(r"\D", "", m.group())
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else None


def _ip(m: re.Match) -> str | None:
    return None if _VERSION_BEFORE.search(m.string[max(0, m.start() - 10):m.start()]) else "[IP]"


def _phone(m: re.Match) -> str | None:
    s = m.group()
    digits = re.sub(r"\D", "", s)
    if not 9 <= len(digits) <= 15:
        return None
    if re.fullmatch(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}", s) or re.fullmatch(r"\d{1,2}[-./]\d{1,2}[-./]\d{2,4}", s):
        return None  # a date
    if "." in s and not s.startswith("+") and re.fullmatch(r"[\d.]+", s) and s.count(".") >= 2 and len(s) < 12:
        return None  # dotted numbers such as versions
    return "[PHONE]"


_RULES = [
    ("secret", _SECRET, lambda m: "[SECRET]"),
    ("email", _EMAIL, lambda m: "[EMAIL]"),
    ("card", _CARD, _card),
    ("ip", _IPV4, _ip),
    ("ip", _IPV6, lambda m: "[IP]"),
    ("phone", _PHONE, _phone),
]


def redact(text: str) -> tuple[str, dict[str, int]]:
    """Replace PII in `text` with [EMAIL], [PHONE], [CARD], [IP], [SECRET]; return the new
    text and the count of each kind replaced (kinds with no match are left out)."""
    if not text:
        return text, {}
    counts: Counter = Counter()
    for kind, pattern, replace in _RULES:
        def sub(m, kind=kind, replace=replace):
            r = replace(m)
            if r is None:
                return m.group()
            counts[kind] += 1
            return r
        text = pattern.sub(sub, text)
    return text, dict(counts)
