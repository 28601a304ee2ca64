"""PII redaction: what is redacted, with counts, and what must stay (years, prices, versions)."""

from __future__ import annotations

import pytest

from signals.pii import luhn_ok, redact

POSITIVE = [
    ("write to jane.doe+work@example.co.uk today", "email", "[EMAIL]"),
    ("call +1 415-555-0132 now", "phone", "[PHONE]"),
    ("call (415) 555-0132 now", "phone", "[PHONE]"),
    ("ring +44 20 7946 0958 please", "phone", "[PHONE]"),
    ("card 4111 1111 1111 1111 exp", "card", "[CARD]"),
    ("card 5500-0000-0000-0004 exp", "card", "[CARD]"),
    ("from 192.168.10.24 at noon", "ip", "[IP]"),
    ("host 2001:db8::8a2e:370:7334 up", "ip", "[IP]"),
    ("key sk-proj-abcdefghijklmnopqrstuvwx0123 leaked", "secret", "[SECRET]"),
    ("aws AKIAIOSFODNN7EXAMPLE here", "secret", "[SECRET]"),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789 here", "secret", "[SECRET]"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz123456", "secret", "[SECRET]"),
]


@pytest.mark.parametrize("text,kind,token", POSITIVE)
def test_redacts_each_kind_with_a_count(text, kind, token):
    out, counts = redact(text)
    assert token in out and counts == {kind: 1}, (out, counts)


NEGATIVE = [
    "In 2024 the plan cost $19.99, or 1,299.00 EUR a year.",
    "Upgrade to version 2.1.0 or v10.0.0.1 (see release 3.4.5.6).",
    "Meet on 2024-05-01 at 10:30:00, room 12, pages 10-20.",
    "Order 1234567890 shipped; pi is 3.14159; ratio 16:9.",
    "card-like 4111 1111 1111 1112 fails the Luhn check",
    "an email-ish word like user@localhost stays",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_leaves_years_prices_versions_dates_and_non_luhn_numbers(text):
    assert redact(text) == (text, {})


def test_counts_add_up_over_one_text():
    out, counts = redact("a@b.io, c@d.io, 10.0.0.1 and 4111111111111111")
    assert counts == {"email": 2, "ip": 1, "card": 1}
    assert out == "[EMAIL], [EMAIL], [IP] and [CARD]"


def test_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
