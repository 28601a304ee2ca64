"""Pluggable judges for win rate: which of two answers to the same prompt is better.

`build_judge(node, store)` turns the `eval.judge` config node into a judge whose
`compare(rows, cand_answers, base_answers)` returns one record per prompt:
{"outcome": 1 (candidate wins) | 0.5 (tie) | 0 (baseline wins), ...details}.

- `rules`: task checks from config (regex, JSON validity, a Python callable
  "module:function"); the answer passing more checks wins. A `callable:` check
  IMPORTS AND RUNS the named code, with the evaluating process's rights: a judge
  config is code, not data.
- `reward_model`: a sequence-classification model (a `method=reward` run dir or
  a model folder) scores prompt + answer; the higher reward wins.
- `openai`: any OpenAI-compatible chat endpoint. Each pair is judged twice, with
  the candidate first and then second, so position bias cancels; both verdicts
  are recorded. Retries with exponential backoff; verdicts cached in the store.
  Every error it raises, and every reply it caches, passes `signals.secrets.scrub`
  with the key read from the environment: an endpoint that echoes the request
  (`Authorization: Bearer ...`) leaves no key in the store, the logs or the dashboard.

Trust: the judge node comes from the composed config (conf/ and the command line). It
is trusted input only, like a run directory (its `manifest.json` names the models eval
loads; its frozen `config.yaml` is what train's workers run): a `callable:` runs code, a
`path:` loads a model, a `base_url:` receives the key. Never compose a config, or
evaluate a run directory, that someone you do not trust could have written.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from eval import EvalError
from signals.secrets import scrub


def _outcome(cand: float, base: float, eps: float = 0.0) -> float:
    if cand > base + eps:
        return 1.0
    if base > cand + eps:
        return 0.0
    return 0.5


# ----------------------------------------------------------------------------- rules


class RulesJudge:
    """Scores each answer by the share of applicable checks it passes.

    A `callable: "package.module:function"` check imports that module (running its
    top-level code) and calls the function on every answer, in this process: only
    configure modules you trust, as you would code you run yourself.
    """

    name = "rules"

    def __init__(self, checks: list[dict]):
        self.checks = []
        for i, c in enumerate(checks or []):
            c = dict(c)
            name = c.get("name") or f"check{i}"
            kinds = [k for k in ("regex", "json", "callable") if c.get(k) not in (None, False)]
            if len(kinds) != 1:
                raise EvalError(f"eval.judge.checks[{i}] ({name}): set exactly one of regex, json, callable")
            kind = kinds[0]
            if kind == "regex":
                try:
                    fn = _regex_check(re.compile(c["regex"], re.DOTALL | re.MULTILINE))
                except re.error as e:
                    raise EvalError(f"eval.judge.checks[{i}] ({name}): bad regex: {e}") from e
            elif kind == "json":
                fn = _json_check
            else:
                fn = _load_callable(c["callable"], f"eval.judge.checks[{i}] ({name})")
            self.checks.append({"name": name, "fn": fn, "tasks": set(c.get("tasks") or [])})

    def score(self, row: dict, answer: str) -> tuple[float, dict]:
        passed = {}
        for c in self.checks:
            if c["tasks"] and row.get("task") not in c["tasks"]:
                continue
            passed[c["name"]] = bool(c["fn"](row["prompt"], answer, row))
        return (sum(passed.values()) / len(passed) if passed else 0.0), passed

    def compare(self, rows, cand_answers, base_answers) -> list[dict]:
        out = []
        for row, ca, ba in zip(rows, cand_answers, base_answers, strict=True):
            cs, cp = self.score(row, ca)
            bs, bp = self.score(row, ba)
            out.append({"outcome": _outcome(cs, bs), "cand_score": cs, "base_score": bs,
                        "details": json.dumps({"candidate": cp, "baseline": bp})})
        return out

    def close(self):
        pass


def _regex_check(pattern):
    return lambda prompt, answer, row: pattern.search(answer) is not None


def _json_check(prompt, answer, row) -> bool:
    text = answer.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    try:
        json.loads(fence.group(1) if fence else text)
        return True
    except ValueError:
        return False


def _load_callable(spec: str, where: str):
    """`package.module:function`, called as fn(prompt_messages, answer, row) -> bool."""
    mod, _, attr = str(spec).partition(":")
    if not mod or not attr:
        raise EvalError(f"{where}: callable must look like 'package.module:function', got {spec!r}")
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise EvalError(f"{where}: cannot import {spec!r}: {e}") from e
    if not callable(fn):
        raise EvalError(f"{where}: {spec!r} is not callable")
    return fn


# ----------------------------------------------------------------------------- reward model


class RewardModelJudge:
    """A reward model (sequence classification, one logit) scores prompt + answer."""

    name = "reward_model"

    def __init__(self, path: str, batch_size: int = 16, max_length: int | None = 512,
                 tie_epsilon: float = 0.0, device: str = "cpu"):
        if not path:
            raise EvalError("eval.judge.path: the reward model (a method=reward run dir or model folder) is not set")
        self.model, self.tokenizer = load_reward_model(path)
        self.model.to(device)
        self.device = device
        self.batch_size, self.max_length, self.eps = int(batch_size), max_length, float(tie_epsilon)

    def rewards(self, prompts, answers) -> list[float]:
        import torch

        texts = [self.tokenizer.apply_chat_template(list(p) + [{"role": "assistant", "content": a}],
                                                    tokenize=False) for p, a in zip(prompts, answers, strict=True)]
        out: list[float] = []
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"
        try:
            with torch.inference_mode():
                for s in range(0, len(texts), self.batch_size):
                    enc = self.tokenizer(texts[s:s + self.batch_size], return_tensors="pt", padding=True,
                                         truncation=bool(self.max_length), max_length=self.max_length,
                                         add_special_tokens=False)
                    logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
                    out.extend(logits[:, 0].float().tolist())
        finally:
            self.tokenizer.truncation_side = side
        return out

    def compare(self, rows, cand_answers, base_answers) -> list[dict]:
        prompts = [r["prompt"] for r in rows]
        cr, br = self.rewards(prompts, cand_answers), self.rewards(prompts, base_answers)
        return [{"outcome": _outcome(c, b, self.eps), "cand_score": c, "base_score": b, "details": None}
                for c, b in zip(cr, br, strict=True)]

    def close(self):
        self.model = None


def load_reward_model(path: str):
    """A reward model from a run dir (manifest: model/ or adapter/) or a model folder."""
    from transformers import AutoModelForSequenceClassification

    from eval.runs import read_run
    from train.models import load_tokenizer

    p = Path(path)
    try:
        if (p / "manifest.json").is_file():
            run = read_run(p)
            tok_dir = run.model_path or run.adapter_path
            tok = load_tokenizer(str(tok_dir))
            if run.model_path:
                model = AutoModelForSequenceClassification.from_pretrained(str(run.model_path), num_labels=1)
            else:
                from peft import PeftModel

                base = AutoModelForSequenceClassification.from_pretrained(run.base_model, num_labels=1)
                base.config.pad_token_id = tok.pad_token_id
                model = PeftModel.from_pretrained(base, str(run.adapter_path)).merge_and_unload()
        else:
            tok = load_tokenizer(str(path))
            model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
    except EvalError:
        raise
    except Exception as e:  # noqa: BLE001 - any load failure is a clear judge error
        raise EvalError(f"eval.judge.path={path!r}: cannot load the reward model: {e}") from e
    model.config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


# ----------------------------------------------------------------------------- openai endpoint


DEFAULT_TEMPLATE = """You compare two answers to the same conversation. Reply with exactly one of: A, B, tie.

[Conversation]
{prompt}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Which answer is better? Reply A, B or tie."""


class OpenAIJudge:
    """An OpenAI-compatible `/chat/completions` endpoint as a pairwise judge."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 template: str | None = None, temperature: float = 0.0, max_tokens: int = 8,
                 timeout_s: float = 60.0, max_retries: int = 4, backoff_s: float = 1.0,
                 cache: bool = True, store: str | None = None):
        if not base_url or not model:
            raise EvalError("eval.judge: the openai judge needs base_url and model")
        key = os.environ.get(api_key_env or "")
        if not key:
            raise EvalError(f"eval.judge.api_key_env: environment variable {api_key_env!r} is not set "
                            "(the openai judge reads its key from the environment)")
        self.url = str(base_url).rstrip("/") + "/chat/completions"
        self.base_url, self.model, self.key = str(base_url), str(model), key
        self.template = template or DEFAULT_TEMPLATE
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.timeout, self.max_retries, self.backoff = float(timeout_s), int(max_retries), float(backoff_s)
        self.store = str(store) if cache and store else None   # opened per lookup, never held
        self.requests = 0     # HTTP requests made (cache hits make none)

    def _key(self, prompt_text: str, a: str, b: str) -> str:
        blob = json.dumps([self.base_url, self.model, self.template, prompt_text, a, b])
        return hashlib.sha256(blob.encode()).hexdigest()

    def _post(self, body: dict) -> str:
        data = json.dumps(body).encode()
        last = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=data, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
            self.requests += 1
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    reply = json.loads(resp.read().decode())
                return reply["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code != 429 and e.code < 500:
                    body = self._scrub(_read_body(e))[:300]       # scrubbed before it is cut
                    raise EvalError(self._scrub(f"judge endpoint {self.url}: HTTP {e.code} {e.reason}: "
                                                f"{body!r}")) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = str(e)
            except (KeyError, IndexError, ValueError) as e:
                raise EvalError(self._scrub(f"judge endpoint {self.url}: unexpected reply ({e})")) from None
        raise EvalError(self._scrub(f"judge endpoint {self.url}: gave up after {self.max_retries + 1} tries "
                                    f"({last})"))

    def _scrub(self, text: str) -> str:
        """`text` without the key (nor any other secret shape): it is stored and shown."""
        return scrub(text, known=[self.key])

    def verdict(self, prompt_text: str, a: str, b: str, interaction_id: str | None = None) -> tuple[str, str]:
        """The judge's verdict (A, B or tie) and its raw reply; cached in the store with the
        interaction it is about (`judgment_subjects`), so `signals forget` can delete it."""
        key = self._key(prompt_text, a, b)
        hit = self._cached(key)
        if hit:
            return hit[0], hit[1]
        content = self.template.format(prompt=prompt_text, answer_a=a, answer_b=b)
        raw = self._post({"model": self.model, "temperature": self.temperature,
                          "max_tokens": self.max_tokens,
                          "messages": [{"role": "user", "content": content}]})
        v = parse_verdict(raw)
        if self.store is not None:
            from signals.store import store

            with store(self.store) as con:        # a short write: ingest and the dashboard are not locked out
                con.execute("INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?)",
                            [key, self.model, self._scrub(self.base_url), v, self._scrub(raw),
                             datetime.now(UTC)])
                if interaction_id is not None:
                    con.execute("INSERT INTO judgment_subjects VALUES (?, ?)", [key, str(interaction_id)])
        return v, raw

    def _cached(self, key: str):
        """(verdict, raw) from the store's judgments cache, read-only, or None."""
        if self.store is None or not Path(self.store).is_file():
            return None
        from signals.store import store

        with store(self.store, read_only=True) as con:
            return con.execute("SELECT verdict, raw FROM judgments WHERE key = ?", [key]).fetchone()

    def compare(self, rows, cand_answers, base_answers) -> list[dict]:
        from tqdm.auto import tqdm

        out = []
        for row, ca, ba in tqdm(list(zip(rows, cand_answers, base_answers, strict=True)),
                                desc="judge", leave=False):
            pt = "\n".join(f"{m['role']}: {m['content']}" for m in row["prompt"])
            about = row.get("interaction_id")
            v1, _ = self.verdict(pt, ca, ba, about)      # candidate shown as A
            v2, _ = self.verdict(pt, ba, ca, about)      # candidate shown as B
            s1 = {"A": 1.0, "B": 0.0, "tie": 0.5}[v1]
            s2 = {"A": 0.0, "B": 1.0, "tie": 0.5}[v2]
            out.append({"outcome": (s1 + s2) / 2, "cand_score": None, "base_score": None,
                        "details": json.dumps({"candidate_first": v1, "baseline_first": v2})})
        return out

    def close(self):
        pass


def _read_body(e: urllib.error.HTTPError, limit: int = 4096) -> str:
    """The start of an HTTP error's body as text (it may echo the request, key included)."""
    try:
        return (e.read(limit) or b"").decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - a body that cannot be read is just not shown
        return ""


def parse_verdict(text: str) -> str:
    """'A', 'B' or 'tie' from a judge reply ('A', 'Answer B.', 'Tie'); anything else is a tie."""
    t = (text or "").strip().lower()
    m = re.match(r"^(?:answer\s*)?\**\s*(a|b|tie)\b", t)
    if m:
        return {"a": "A", "b": "B", "tie": "tie"}[m.group(1)]
    return "tie"


# settings that change how a judge runs, not what it decides: left out of its key
_RUNTIME = {"batch_size", "device", "timeout_s", "max_retries", "backoff_s", "cache", "api_key_env"}


def judge_key(node) -> str:
    """`name:hash` of the settings that decide a judge's verdicts (checks; model path; endpoint,
    model and template): a calibration holds for exactly these settings."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    node = {k: v for k, v in dict(node or {}).items() if k not in _RUNTIME}
    name = node.get("name", "rules")
    if name == "reward_model" and node.get("path"):
        node["path"] = str(Path(str(node["path"])).resolve())
    blob = json.dumps(node, sort_keys=True, default=str)
    return f"{name}:{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def build_judge(node, store: str | None = None):
    """The judge named by `eval.judge.name` with the rest of the node as its settings."""
    node = dict(node or {})
    name = node.pop("name", "rules")
    if name == "rules":
        return RulesJudge(node.get("checks") or [])
    if name == "reward_model":
        return RewardModelJudge(node.get("path"), node.get("batch_size", 16),
                                node.get("max_length", 512), node.get("tie_epsilon", 0.0),
                                node.get("device") or "cpu")
    if name == "openai":
        keys = ("base_url", "model", "api_key_env", "template", "temperature", "max_tokens",
                "timeout_s", "max_retries", "backoff_s", "cache")
        return OpenAIJudge(**{k: node[k] for k in keys if k in node and node[k] is not None}, store=store)
    raise EvalError(f"eval.judge.name={name!r}: unknown judge (rules | reward_model | openai)")
