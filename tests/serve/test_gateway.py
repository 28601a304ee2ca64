"""The gateway end to end: real engine (`transformers serve`), real gateway process, real HTTP."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.serve.conftest import write_pointer


def test_chat_non_streaming_and_streaming_are_served_and_captured(gateway_factory):
    gw = gateway_factory()
    r = gw.chat(user="alice", metadata={"session_id": "s1", "task": "greet", "locale": "en"})
    assert r.status_code == 200, r.text
    body = r.json()
    iid = r.headers["x-interaction-id"]
    assert body["interaction_id"] == iid and iid.startswith("gw-")
    assert body["model"] == "tiny-a" and r.headers["x-served-run"] == "tiny-a"
    assert body["choices"][0]["message"]["role"] == "assistant"

    chunks, streamed_text = [], ""
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", headers={**gw.headers, "X-User-Id": "bob"},
                      json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True},
                      timeout=60) as s:
        assert s.status_code == 200
        sid = s.headers["x-interaction-id"]
        for line in s.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                chunks.append(chunk)
                for c in chunk["choices"]:
                    streamed_text += (c.get("delta") or {}).get("content") or ""
    assert chunks and all(c["interaction_id"] == sid and c["model"] == "tiny-a" for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens"] == 3

    gw.stop()
    recs = {r["interaction_id"]: r for r in gw.records()}
    assert set(recs) == {iid, sid}
    a, b = recs[iid], recs[sid]
    assert (a["user_id"], a["session_id"], a["task"], a["app"], a["model_id"]) == ("alice", "s1", "greet", "test-app", "tiny-a")
    assert a["prompt"] == [{"role": "user", "content": "hello"}]
    assert a["completion"] == body["choices"][0]["message"]["content"]
    assert a["metadata"]["locale"] == "en" and a["metadata"]["completion_tokens"] == 2
    assert a["metadata"]["latency_ms"] > 0
    assert b["user_id"] == "bob" and b["completion"] == streamed_text and b["metadata"]["ttft_ms"] > 0
    assert gw.key not in (gw.landing.parent / "gateway.log").read_text()
    for rec in recs.values():
        assert gw.key not in json.dumps(rec)


FEEDBACK_CASES = [   # (event, expected status, expected reason or field)
    ({"interaction_id": "i1", "kind": "accept"}, 200, None),
    ({"interaction_id": "i1", "kind": "reject", "ts": "2026-01-01T00:00:00Z"}, 200, None),
    ({"interaction_id": "i1", "kind": "edit", "edited_text": "better"}, 200, None),
    ({"interaction_id": "i1", "kind": "rate", "score": 4}, 200, None),
    ({"interaction_id": "i1", "kind": "choose", "other_interaction_id": "i2"}, 200, None),
    ({"interaction_id": "i1", "kind": "shrug"}, 422, "unknown_kind"),
    ({"interaction_id": "i1"}, 422, "missing_field"),
    ({"kind": "accept"}, 422, "missing_field"),
    ({"interaction_id": "i1", "kind": "edit"}, 422, "edit_without_text"),
    ({"interaction_id": "i1", "kind": "rate"}, 422, "rate_without_score"),
    ({"interaction_id": "i1", "kind": "rate", "score": "great"}, 422, "wrong_type"),
    ({"interaction_id": "i1", "kind": "choose"}, 422, "choose_without_other"),
    ({"interaction_id": "i1", "kind": "accept", "ts": "year 10000"}, 422, "invalid_timestamp"),
    ({"interaction_id": "i1", "kind": "accept", "ts": "2200-01-01T00:00:00Z"}, 422, "invalid_timestamp"),
    ({"interaction_id": ["i1"], "kind": "accept"}, 422, "wrong_type"),
    ({"interaction_id": "i1", "kind": "accept", "api_key": "x"}, 422, "api_key"),
    ({"events": [{"interaction_id": "i1", "kind": "accept"}, {"interaction_id": "i1", "kind": "nope"}]}, 422,
     "unknown_kind"),
    ({"events": []}, 422, None),
    ([1, 2], 422, None),
]


def test_feedback_validation_matrix_writes_only_good_events(gateway_factory):
    gw = gateway_factory()
    accepted = 0
    with httpx.Client(headers=gw.headers, timeout=30) as c:
        for event, status, why in FEEDBACK_CASES:
            r = c.post(f"{gw.url}/v1/feedback", json=event)
            assert r.status_code == status, (event, r.text)
            if status == 200:
                accepted += 1
                assert r.json()["logged"] == 1
            elif why:
                err = r.json()["error"]
                assert why in (err.get("reason"), err.get("field")) or why in err["message"], (event, err)
        assert c.post(f"{gw.url}/v1/feedback", content=b"{not json").status_code == 400
    gw.stop()
    recs = gw.records()
    assert len(recs) == accepted
    assert all(r["metadata"]["app"] == "test-app" for r in recs)


def test_keys_size_and_rate_limits(gateway_factory):
    gw = gateway_factory("limits.requests_per_minute=60", "limits.burst=3", "limits.max_body_bytes=2000")
    url = f"{gw.url}/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer sk-sig-nope"}).status_code == 401
    assert httpx.get(f"{gw.url}/v1/models").status_code == 401
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    assert httpx.post(url, json=big, headers=gw.headers).status_code == 413
    codes = [httpx.post(url, json=body, headers=gw.headers, timeout=30).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429, codes        # 413 took the first token
    r = httpx.post(url, json=body, headers=gw.headers)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    from serve.keys import KeyFile

    KeyFile(gw.keys_file).revoke("test-app")             # picked up without a restart
    for _ in range(50):
        if httpx.post(url, json=body, headers=gw.headers).status_code == 401:
            break
        asyncio.run(asyncio.sleep(0.1))
    else:
        pytest.fail("a revoked key still works")


def test_opted_out_and_forgotten_users_are_served_but_not_logged(gateway_factory):
    from signals import privacy
    from signals.store import open_store

    gw = gateway_factory(start=False)
    con = open_store(gw.store)
    privacy.optout(con, ["olive"])             # before the gateway starts
    con.close()
    gw.start()
    assert gw.chat(user="olive").status_code == 200
    assert gw.chat(user="alice").status_code == 200
    con = open_store(gw.store)
    privacy.forget(con, ["alice"])             # while it runs: the list is re-read
    con.close()
    ok = False
    for _ in range(50):
        n = httpx.get(f"{gw.url}/v1/gateway/stats", headers=gw.headers).json()["suppressed_users"]
        if n == 2:
            ok = True
            break
        asyncio.run(asyncio.sleep(0.1))
    assert ok
    assert gw.chat(user="alice").status_code == 200
    r = httpx.post(f"{gw.url}/v1/feedback", headers=gw.headers,
                   json={"interaction_id": "x", "kind": "accept", "user_id": "olive"})
    assert r.status_code == 200 and r.json()["logged"] == 0
    assert gw.chat(user="carol").status_code == 200
    gw.stop()
    users = [r.get("user_id") for r in gw.records()]
    assert users == ["alice", "carol"]          # alice's first request came before her erasure
    text = gw.landing.joinpath("..").resolve()
    assert "olive" not in "".join(p.read_text() for p in text.rglob("*.jsonl"))


def test_canary_share_is_sticky_per_user(gateway_factory, second_model_dir):
    gw = gateway_factory("canary_share=0.3", "limits.requests_per_minute=0", start=False)
    write_pointer(gw.pointers, "canary", "tiny-b", second_model_dir)
    gw.start()
    served = {}

    async def run():
        async with httpx.AsyncClient(headers=gw.headers, timeout=60) as c:
            sem = asyncio.Semaphore(8)

            async def one(user):
                async with sem:
                    r = await c.post(f"{gw.url}/v1/chat/completions", json={
                        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "user": user})
                    assert r.status_code == 200
                    served.setdefault(user, set()).add(r.headers["x-served-run"])
            await asyncio.gather(*(one(f"user-{i}") for i in range(300) for _ in range(2)))
    asyncio.run(run())
    assert all(len(runs) == 1 for runs in served.values())          # sticky
    share = sum(runs == {"tiny-b"} for runs in served.values()) / len(served)
    assert 0.22 < share < 0.38, share                                 # 300 users: 3 sigma is 0.08
    from serve.routing import bucket

    assert all((bucket(u) < 0.3) == (runs == {"tiny-b"}) for u, runs in served.items())


def test_alias_move_under_load_fails_no_request(gateway_factory, second_model_dir):
    gw = gateway_factory("limits.requests_per_minute=0")
    seen, failures = [], []

    async def run():
        async with httpx.AsyncClient(headers=gw.headers, timeout=60) as c:
            stop = asyncio.Event()

            async def worker(w):
                i = 0
                while not stop.is_set() and i < 400:
                    i += 1
                    stream = i % 2 == 0
                    try:
                        r = await c.post(f"{gw.url}/v1/chat/completions", json={
                            "messages": [{"role": "user", "content": f"q{w}-{i}"}], "max_tokens": 2,
                            "stream": stream, "user": f"u{w}"})
                        text = r.text
                        if r.status_code != 200 or (stream and "[DONE]" not in text):
                            failures.append((r.status_code, text[:200]))
                        seen.append(r.headers.get("x-served-run"))
                    except httpx.HTTPError as e:
                        failures.append(repr(e))

            async def mover():
                await asyncio.sleep(1.5)
                write_pointer(gw.pointers, "production", "tiny-b", second_model_dir)
                for _ in range(300):                   # until new requests land on tiny-b, then a bit more
                    await asyncio.sleep(0.1)
                    if seen[-8:] == ["tiny-b"] * 8:
                        break
                await asyncio.sleep(1.0)
                stop.set()
            await asyncio.gather(mover(), *(worker(w) for w in range(8)))
    asyncio.run(run())
    assert not failures, failures[:5]
    assert "tiny-a" in seen and seen[-1] == "tiny-b"
    first_b = seen.index("tiny-b")
    assert set(seen[first_b + 16:]) == {"tiny-b"}      # after the move (and requests in flight), only the new run


@pytest.mark.slow
def test_10000_requests_become_10000_interactions_after_ingest(gateway_factory):
    """Through the gateway and the nightly job's ingest (signals.ingest.ingest_paths on the landing folder)."""
    from signals.ingest import ingest_paths
    from signals.store import open_store

    gw = gateway_factory("limits.requests_per_minute=0", "capture.flush_ms=50")
    ids, failures = set(), []

    async def run():
        async with httpx.AsyncClient(headers=gw.headers, timeout=120,
                                     limits=httpx.Limits(max_connections=40)) as c:
            sem = asyncio.Semaphore(32)

            async def one(i):
                async with sem:
                    r = await c.post(f"{gw.url}/v1/chat/completions", json={
                        "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 1,
                        "user": f"user-{i % 500}", "stream": i % 4 == 0})
                    if r.status_code != 200:
                        failures.append(r.status_code)
                    else:
                        ids.add(r.headers["x-interaction-id"])
            await asyncio.gather(*(one(i) for i in range(10_000)))
    asyncio.run(run())
    assert not failures and len(ids) == 10_000
    stats = httpx.get(f"{gw.url}/v1/gateway/stats", headers=gw.headers).json()["capture"]
    gw.stop()
    assert stats["dropped"] == 0
    summary = ingest_paths([str(gw.landing)], db=str(gw.store), progress=False)
    assert summary["interactions"] == 10_000 and summary["quarantined"] == 0, summary
    con = open_store(gw.store, read_only=True)
    stored = {r[0] for r in con.execute("SELECT interaction_id FROM interactions").fetchall()}
    con.close()
    assert stored == ids


def test_pii_is_redacted_at_capture_when_asked(gateway_factory):
    gw = gateway_factory("capture.redact_pii=true")
    r = gw.chat(user="dana", messages=[{"role": "user", "content": "mail me at dana@example.com or +1 415 555 0100"}])
    assert r.status_code == 200
    gw.stop()
    (rec,) = gw.records()
    text = rec["prompt"][0]["content"]
    assert "dana@example.com" not in text and "[EMAIL]" in text and "[PHONE]" in text, text
