"""The live loop on real parts: `transformers serve` on tiny models, the gateway process, users
whose reactions depend on the run that answered them, the capture published by SIGHUP,
ingest, and the verify stage: a true improvement is promoted, a true regression rolled
back, a tie keeps waiting; the gateway follows each move."""

from __future__ import annotations

import json
import random
import signal
import time

import httpx

from eval.registry import alias_target, promote
from eval.verify import Online, ensure_production, verify
from signals.ingest import ingest_paths
from signals.store import open_store
from tests.serve.conftest import Gateway

ONLINE = Online(enabled=True, min_interactions=20, margin=0.0, resamples=400)


def serve_users(gw: Gateway, *, p_canary: float, p_prod: float, seed: int, users: int = 30, per_user: int = 2):
    """Every user asks `per_user` times and accepts the answer with the probability of the
    alias that served it (X-Served-Run), else rejects it. {alias: answers}."""
    from concurrent.futures import ThreadPoolExecutor

    canary = json.loads((gw.pointers / "canary.json").read_text())["run_id"]

    def one(client, u: int, k: int) -> str:
        r = gw.chat(client, user=f"s{seed}-u{u}", max_tokens=1, metadata={"task": ["a", "b"][k % 2]})
        assert r.status_code == 200, r.text
        alias = "canary" if r.headers["x-served-run"] == canary else "production"
        p = p_canary if alias == "canary" else p_prod
        accept = random.Random(f"{seed}-{u}-{k}").random() < p
        f = client.post(f"{gw.url}/v1/feedback", headers=gw.headers, timeout=30,
                        json={"interaction_id": r.json()["interaction_id"], "kind": "accept" if accept else "reject"})
        assert f.status_code == 200, f.text
        return alias

    with httpx.Client() as client, ThreadPoolExecutor(4) as pool:
        aliases = list(pool.map(lambda uk: one(client, *uk), [(u, k) for u in range(users) for k in range(per_user)]))
    return {a: aliases.count(a) for a in set(aliases)}


def publish_and_ingest(gw: Gateway) -> None:
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while list(gw.landing.glob(".gateway-*.open")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(gw.landing.glob(".gateway-*.open")), "SIGHUP did not publish the capture file"
    ingest_paths([str(gw.landing)], str(gw.store), progress=False)


def wait_serving(gw: Gateway, want: dict) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = {m["alias"]: m["id"] for m in httpx.get(f"{gw.url}/v1/models", headers=gw.headers).json()["data"]}
        if got == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"the gateway serves {got}, not {want}")


def canary(gw: Gateway, run_id: str, model_dir) -> None:
    with open_store(gw.store) as con:
        con.execute("INSERT INTO runs VALUES (?, 't', 'sft', ?, ?, NULL, false, NULL, '{}', now())",
                    [run_id, str(model_dir), str(model_dir)])
        promote(con, run_id, alias="canary", pointer_dir=str(gw.pointers), force=True, reason="test")


def test_canary_promoted_on_improvement_rolled_back_on_regression_waits_on_a_tie(
        tmp_path, engine_url, tiny_model_dir, second_model_dir):
    gw = Gateway(tmp_path / "gw", engine_url, ["canary_share=0.5"])
    with open_store(gw.store) as con:
        base = ensure_production(con, str(tiny_model_dir), pointer_dir=str(gw.pointers))
    canary(gw, "better", second_model_dir)
    gw.start()
    try:
        wait_serving(gw, {"production": base, "canary": "better"})
        served = serve_users(gw, p_canary=0.85, p_prod=0.3, seed=1)
        assert min(served.values()) >= 20, served                    # a sticky share of users each
        publish_and_ingest(gw)
        with open_store(gw.store) as con:
            out = verify(con, ONLINE, pointer_dir=str(gw.pointers))
            assert out["decision"] == "promote", out
            assert alias_target(con, "production") == "better"
        wait_serving(gw, {"production": "better"})

        canary(gw, "worse", tiny_model_dir)
        wait_serving(gw, {"production": "better", "canary": "worse"})
        serve_users(gw, p_canary=0.15, p_prod=0.85, seed=2)
        publish_and_ingest(gw)
        with open_store(gw.store) as con:
            out = verify(con, ONLINE, pointer_dir=str(gw.pointers))
            assert out["decision"] == "rollback", out
            assert alias_target(con, "production") == "better" and alias_target(con, "canary") is None
        wait_serving(gw, {"production": "better"})

        canary(gw, "same", tiny_model_dir)
        wait_serving(gw, {"production": "better", "canary": "same"})
        serve_users(gw, p_canary=0.5, p_prod=0.5, seed=3)
        publish_and_ingest(gw)
        with open_store(gw.store) as con:
            out = verify(con, ONLINE, pointer_dir=str(gw.pointers))
            assert out["decision"] == "wait" and out["ci"][0] < 0 < out["ci"][1], out
            assert alias_target(con, "canary") == "same"
    finally:
        gw.stop()
