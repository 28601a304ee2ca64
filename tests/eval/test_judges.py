"""Judges: task rules, a reward model run, and an OpenAI-compatible endpoint (fake, local)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eval import EvalError
from eval.judges import OpenAIJudge, RewardModelJudge, RulesJudge, build_judge, parse_verdict

ROWS = [{"prompt": [{"role": "user", "content": f"q{i}"}], "task": "sql" if i % 2 else "reply"}
        for i in range(6)]


def shout(prompt, answer, row) -> bool:
    """A callable check referenced from config as tests.eval.test_judges:shout."""
    return answer.isupper()


def test_rules_regex_json_callable_and_task_filter():
    j = build_judge({"name": "rules", "checks": [
        {"name": "greets", "regex": "^hello"},
        {"name": "json", "json": True, "tasks": ["sql"]},
        {"name": "shout", "callable": "tests.eval.test_judges:shout"}]})
    assert j.score(ROWS[1], '```json\n{"a": 1}\n```')[1] == {"greets": False, "json": True, "shout": False}
    assert j.score(ROWS[0], "HELLO")[1] == {"greets": False, "shout": True}   # json applies to sql only
    out = j.compare(ROWS[:2], ["hello there", "hello"], ["bye", "hello"])
    assert [o["outcome"] for o in out] == [1.0, 0.5]


def test_rules_config_errors_are_clear():
    with pytest.raises(EvalError, match=r"checks\[0\] \(x\): set exactly one"):
        RulesJudge([{"name": "x", "regex": "a", "json": True}])
    with pytest.raises(EvalError, match="cannot import 'nope.mod:fn'"):
        RulesJudge([{"callable": "nope.mod:fn"}])
    with pytest.raises(EvalError, match="bad regex"):
        RulesJudge([{"regex": "("}])


def test_parse_verdict():
    assert [parse_verdict(t) for t in ("A", " b.", "Tie", "Answer A", "**B**", "?")] == \
        ["A", "B", "tie", "A", "B", "tie"]


def test_reward_model_judge_from_a_reward_run(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = tmp_path / "reward_run"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    rm.save_pretrained(run / "model")
    tok.save_pretrained(run / "model")
    (run / "manifest.json").write_text(json.dumps({
        "run_id": "rm1", "method": "reward", "base_model": str(tiny_model_dir), "peft": False,
        "artifacts": {"model": "model", "adapter": None}}))
    j = RewardModelJudge(str(run), batch_size=4)
    cand, base = ["thanks great help"] * 6, ["sorry bad error"] * 6
    out = j.compare(ROWS, cand, base)
    rc, rb = j.rewards([r["prompt"] for r in ROWS], cand), j.rewards([r["prompt"] for r in ROWS], base)
    assert [o["outcome"] for o in out] == [1.0 if c > b else 0.0 if b > c else 0.5 for c, b in zip(rc, rb, strict=True)]
    with pytest.raises(EvalError, match="cannot load the reward model"):
        RewardModelJudge(str(tmp_path / "missing"))


# ----------------------------------------------------------------------------- fake endpoint


class FakeEndpoint:
    """A local OpenAI-compatible /chat/completions: prefers the answer containing 'good'
    (or always 'A' when biased); fails the first `fail_first` requests with 503."""

    def __init__(self, biased=False, fail_first=0, status=503, echo=False):
        self.requests, self.bodies = 0, []
        self.biased, self.fail_first, self.status, self.echo = biased, fail_first, status, echo
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                assert outer.requests < 200, "unbounded requests"
                outer.bodies.append((self.path, self.headers.get("Authorization"), body))
                if outer.requests <= outer.fail_first:
                    self.send_response(outer.status)
                    self.end_headers()
                    if outer.echo:   # like a careless proxy: the request's headers in the error body
                        auth = self.headers.get("Authorization")
                        key = auth.split()[-1]
                        self.wfile.write(json.dumps({"error": f"invalid request; you sent Authorization: {auth}",
                                                     "key": key, "hint": f"check key={key}"}).encode())
                    else:
                        self.wfile.write(b'{"error": "busy"}')
                    return
                text = body["messages"][0]["content"]
                a = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]", text, re.S).group(1)
                verdict = "A" if outer.biased or "good" in a else "B"
                if outer.echo:
                    verdict += f" (authorized by {self.headers.get('Authorization')})"
                reply = {"choices": [{"message": {"role": "assistant", "content": verdict}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")


def _judge(url, store, **kw):
    return OpenAIJudge(base_url=url, model="judge-1", api_key_env="JUDGE_KEY", backoff_s=0.01,
                       max_retries=3, timeout_s=5, store=str(store), **kw)


def test_openai_judge_both_orders_retries_and_cache(tmp_path, key):
    cand, base = ["good answer"] * 4, ["meh answer"] * 4
    with FakeEndpoint(fail_first=2) as ep:
        j = _judge(ep.url, tmp_path / "s.duckdb")
        out = j.compare(ROWS[:4], cand, base)
        j.close()
        assert [o["outcome"] for o in out] == [1.0] * 4
        assert json.loads(out[0]["details"]) == {"candidate_first": "A", "baseline_first": "B"}
        assert ep.requests == 2 + 8                        # two 503s retried, then 2 orders x 4 pairs
        path, auth, body = ep.bodies[-1]
        assert path == "/v1/chat/completions" and auth == "Bearer sk-test" and body["model"] == "judge-1"
        j2 = _judge(ep.url, tmp_path / "s.duckdb")         # same store: every verdict is cached
        assert [o["outcome"] for o in j2.compare(ROWS[:4], cand, base)] == [1.0] * 4
        j2.close()
        assert ep.requests == 10 and j2.requests == 0


def test_openai_judge_cancels_position_bias(tmp_path, key):
    with FakeEndpoint(biased=True) as ep:
        j = _judge(ep.url, tmp_path / "s.duckdb", cache=False)
        out = j.compare(ROWS[:3], ["good"] * 3, ["meh"] * 3)
        assert [o["outcome"] for o in out] == [0.5] * 3       # "always A" favours nobody
        assert json.loads(out[0]["details"]) == {"candidate_first": "A", "baseline_first": "A"}


def test_openai_judge_errors(tmp_path, key, monkeypatch):
    with FakeEndpoint(fail_first=100, status=400) as ep:
        j = _judge(ep.url, tmp_path / "s.duckdb", cache=False)
        with pytest.raises(EvalError, match="HTTP 400"):
            j.compare(ROWS[:1], ["a"], ["b"])
        assert ep.requests == 1                              # a client error is not retried
    with FakeEndpoint(fail_first=100) as ep:
        j = _judge(ep.url, tmp_path / "s.duckdb", cache=False)
        with pytest.raises(EvalError, match="gave up after 4 tries"):
            j.compare(ROWS[:1], ["a"], ["b"])
        assert ep.requests == 4
    monkeypatch.delenv("JUDGE_KEY")
    with pytest.raises(EvalError, match="'JUDGE_KEY' is not set"):
        _judge("http://127.0.0.1:9", tmp_path / "s.duckdb")


SECRET_KEY = "zq9-custom-judge-key-0042"      # matches no vendor key shape: only `known` catches it


def test_an_endpoint_echoing_the_key_leaves_it_nowhere(tmp_path, monkeypatch):
    """An HTTP 400 whose body echoes `Authorization: Bearer KEY` and the key: the EvalError
    names the status and the body, with [SECRET] where the key was; a 200 reply echoing it
    is cached (judgments.raw) without it."""
    import duckdb

    monkeypatch.setenv("JUDGE_KEY", SECRET_KEY)
    with FakeEndpoint(fail_first=1, status=400, echo=True) as ep:
        j = _judge(ep.url, tmp_path / "s.duckdb")
        with pytest.raises(EvalError) as err:
            j.compare(ROWS[:1], ["a"], ["b"])
        assert ep.bodies[0][1] == f"Bearer {SECRET_KEY}"       # the key was sent ...
        msg = str(err.value)
        assert "HTTP 400" in msg and "invalid request" in msg and "[SECRET]" in msg
        assert SECRET_KEY not in msg and SECRET_KEY[:12] not in msg   # ... and is not in the error
        assert err.value.__cause__ is None and err.value.__suppress_context__
        out = j.compare(ROWS[:1], ["good"], ["meh"])             # 200s whose text echoes the header
        assert out[0]["outcome"] == 1.0
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    raws = [r[0] for r in con.execute("SELECT raw FROM judgments").fetchall()]
    con.close()
    assert len(raws) == 2 and all("Bearer [SECRET]" in r and SECRET_KEY not in r for r in raws)


def test_judge_url_password_is_not_stored(tmp_path, key):
    with FakeEndpoint() as ep:
        url = ep.url.replace("http://", "http://judge:hunter2pass@")
        with pytest.raises(EvalError) as err:
            OpenAIJudge(base_url=url, model="judge-1", api_key_env="JUDGE_KEY", max_retries=0,
                        timeout_s=5, cache=False).compare(ROWS[:1], ["a"], ["b"])
    assert "hunter2pass" not in str(err.value) and "judge:[SECRET]@" in str(err.value)
