"""Declarative source mappings: any log format -> native records, by config, not code.

A mapping is `conf/source/NAME.yaml` (or a YAML path given to `--source`):

    name: defacto
    reader: jsonl                 # jsonl | json | mlqe-pe | mlqe-da (see signals/adapters.py)
    interactions:                 # native interaction records made from each input record
      - interaction_id: {concat: ["defacto-", {hash: [$.article, $.candidate]}]}
        ts: "2022-10-01T00:00:00Z"
        prompt: [{role: user, content: {concat: ["Summarize:\\n\\n", $.article]}}]
        completion: $.candidate
    feedback:                     # native feedback records, each kept only `when` it holds
      - when: {path: $.has_error, equals: false}
        event_id: ...
        kind: accept

Expressions: a string starting with `$` is a path (`$.a.b`, `$.list[0]`, `$["key with space"]`);
other scalars are constants; a list or a plain mapping is built element by element. Forms:
`{path: P, default: X}`, `{first: [e, ...]}` (first present), `{concat: [e, ...]}`,
`{hash: [e, ...]}` (16 hex of sha256), `{fn: NAME, args: [e, ...]}` (FUNCTIONS below),
`{if: COND, then: e, else: e}`, `{const: X}`.
Conditions: `{path: P, equals: V}`, `{path: P, in: [V, ...]}`, `{nonempty: e}`,
`{equal: [e1, e2]}`, `{not: COND}`, `{all: [COND, ...]}`, `{any: [COND, ...]}`.
A path that is missing (without a default) sends the input record to quarantine
(`mapping_error`, naming the field); the native records then go through the same
validation as any native file. Paths also take negative indices and slices (`$.messages[-1]`,
`$.messages[:-1]`), for chat logs whose last message is the answer.

A mapping may instead be DuckDB SQL (fast: no Python per record; the tracing-tool importers use
it): `sql:` one SELECT, or a list of them, each but the last materialized as temp table
stage1, stage2, ... for the next (DuckDB 2.0.1 ran out of memory evaluating expressions on rows
an unnest had just made; a table in between avoids it). The first reads view `src(ln, line)`
(the file's lines, `ln` the line number); the last
returns column `line`: native records as JSON, each with `_source_row`, or quarantine markers
from `reject(ln, field, detail, raw)` / `not_json(ln, raw)`. `params:` in the YAML is bound
as `getvariable('source_params')`, and `rules('scores')` lists params.scores as (rule_name,
rule) rows. `chunked: true` says the last SELECT maps each line on its own and reads `src`
once: the file then streams through it (about 128 MB of text at a time, mapped and validated
in one statement, on all of DuckDB's threads), which bounds memory; the stages before it run
once over the whole file first (their src has ln NULL: lookups across lines, e.g. a Langfuse
trace's user for its generations). Without it the file's lines are stored in DuckDB first and
the queries may read src as often as they like. Helpers:
signals/sql/source_macros.sql. A SQL mapping is code: use one from conf/source/ or a file you
trust, as you would a Python module. When DuckDB raises inside it, the file is recorded as
`mapping_error` (no row) with DuckDB's message (signals/ingest.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "source"
MISSING = object()


class MappingError(ValueError):
    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}")
        self.field, self.detail = field, detail


# ---------------------------------------------------------------- loading

def available() -> list[str]:
    return sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


def load_mapping(name_or_path: str) -> dict:
    """A mapping by name (conf/source/NAME.yaml) or path; checked for shape at load time."""
    p = Path(name_or_path)
    if not (p.suffix in (".yaml", ".yml") and p.is_file()):
        p = CONF_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        raise ValueError(f"unknown source {name_or_path!r}: no {p} (available: {', '.join(available())})")
    m = yaml.safe_load(p.read_text())
    problems = []
    if not isinstance(m, dict):
        raise ValueError(f"{p}: a source mapping must be a mapping")
    m.setdefault("name", p.stem)
    from signals.adapters import READERS

    if m.get("reader", "jsonl") not in READERS:
        problems.append(f"reader must be one of {sorted(READERS)}")
    for section in ("interactions", "feedback"):
        for i, item in enumerate(m.get(section) or []):
            if not isinstance(item, dict):
                problems.append(f"{section}[{i}] must be a mapping of native field -> expression")
    if "sql" in m:
        if m.get("interactions") or m.get("feedback"):
            problems.append("sql: replaces interactions: and feedback:, not both")
        if m.get("reader", "jsonl") != "jsonl":
            problems.append("a sql: mapping reads JSON lines (reader: jsonl)")
        stages = m["sql"] if isinstance(m["sql"], list) else [m["sql"]]
        for i, q in enumerate(stages):
            if not isinstance(q, str) or (why := _one_select(q)):
                problems.append(f"sql[{i}]: must be one SELECT statement ({why or 'not text'})")
    elif not (m.get("interactions") or m.get("feedback")):
        problems.append("needs at least one of interactions:, feedback:")
    if not isinstance(m.get("chunked", False), bool):
        problems.append("chunked: must be true or false")
    if not isinstance(m.get("params", {}), dict):
        problems.append("params: must be a mapping")
    if problems:
        raise ValueError(f"{p}: " + "; ".join(problems))
    m["_file"] = str(p)
    return m


def _one_select(text: str) -> str:
    """What is wrong with `text` as one SELECT ('' when nothing)."""
    import duckdb

    try:
        stmts = duckdb.connect().extract_statements(text)
    except duckdb.Error as e:
        return str(e).splitlines()[0]
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT:
        return f"{len(stmts)} statement(s) of type {', '.join(str(s.type) for s in stmts)}"
    return ""


def sql_macros() -> str:
    from importlib import resources

    return resources.files("signals.sql").joinpath("source_macros.sql").read_text()


def sql_stages(mapping: dict) -> list[str]:
    """The mapping's SELECTs (each checked at load time to be exactly one statement): every one
    but the last is materialized as temp table stage1, stage2, ... for the next to read."""
    stages = mapping["sql"] if isinstance(mapping["sql"], list) else [mapping["sql"]]
    return [q.strip().rstrip(";") for q in stages]


# ---------------------------------------------------------------- paths, expressions, conditions

_TOKEN = re.compile(r'\.([^.\[\]]+)|\[(-?\d+)\]|\["([^"]+)"\]|\[(-?\d*):(-?\d*)\]')


def get_path(rec, path: str):
    """Value at `path` in `rec`, or MISSING."""
    if not path.startswith("$"):
        raise ValueError(f"path {path!r} must start with $")
    rest, cur = path[1:], rec
    while rest:
        m = _TOKEN.match(rest)
        if not m:
            raise ValueError(f"cannot parse path {path!r} at {rest!r}")
        key, idx, quoted, lo, hi = m.groups()
        rest = rest[m.end():]
        if lo is not None:
            if not isinstance(cur, list):
                return MISSING
            cur = cur[int(lo) if lo else None:int(hi) if hi else None]
        elif idx is not None:
            if not isinstance(cur, list) or not -len(cur) <= int(idx) < len(cur):
                return MISSING
            cur = cur[int(idx)]
        else:
            k = quoted if quoted is not None else key
            if not isinstance(cur, dict) or k not in cur:
                return MISSING
            cur = cur[k]
    return cur


def evaluate(expr, rec, field: str):
    """Evaluate one mapping expression against an input record."""
    if isinstance(expr, str):
        if expr.startswith("$"):
            v = get_path(rec, expr)
            if v is MISSING:
                raise MappingError(field, f"path {expr} not found in the record")
            return v
        return expr
    if isinstance(expr, list):
        return [evaluate(e, rec, field) for e in expr]
    if not isinstance(expr, dict):
        return expr
    if "const" in expr:
        return expr["const"]
    if "path" in expr:
        v = get_path(rec, expr["path"])
        if v is MISSING:
            if "default" in expr:
                return expr["default"]
            raise MappingError(field, f"path {expr['path']} not found in the record")
        return v
    if "first" in expr:
        for e in expr["first"]:
            v = get_path(rec, e) if isinstance(e, str) and e.startswith("$") else evaluate(e, rec, field)
            if v is not MISSING and v is not None:
                return v
        if "default" in expr:
            return expr["default"]
        raise MappingError(field, f"none of {expr['first']} found in the record")
    if "concat" in expr:
        return "".join("" if v is None else str(v) for v in (evaluate(e, rec, field) for e in expr["concat"]))
    if "hash" in expr:
        parts = [evaluate(e, rec, field) for e in expr["hash"]]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    if "fn" in expr:
        fn = FUNCTIONS.get(expr["fn"])
        if fn is None:
            raise ValueError(f"unknown function {expr['fn']!r} (known: {sorted(FUNCTIONS)})")
        args = [evaluate(e, rec, field) for e in expr.get("args", [])]
        try:
            return fn(*args)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise MappingError(field, f"{expr['fn']}: {e}") from None
    if "if" in expr:
        branch = "then" if condition(expr["if"], rec, field) else "else"
        return evaluate(expr.get(branch), rec, field)
    return {k: evaluate(v, rec, f"{field}.{k}") for k, v in expr.items()}


def condition(cond, rec, field: str) -> bool:
    if isinstance(cond, bool):
        return cond
    if "all" in cond:
        return all(condition(c, rec, field) for c in cond["all"])
    if "any" in cond:
        return any(condition(c, rec, field) for c in cond["any"])
    if "not" in cond:
        return not condition(cond["not"], rec, field)
    if "nonempty" in cond:
        try:
            v = evaluate(cond["nonempty"], rec, field)
        except MappingError:
            return False
        return v not in (None, "", [], {}) and not (isinstance(v, str) and not v.strip())
    if "equal" in cond:
        a, b = (evaluate(e, rec, field) for e in cond["equal"])
        return (a.strip() if isinstance(a, str) else a) == (b.strip() if isinstance(b, str) else b)
    if "path" in cond:
        v = get_path(rec, cond["path"])
        if "equals" in cond:
            return v is not MISSING and v == cond["equals"]
        if "in" in cond:
            return v is not MISSING and v in cond["in"]
        return v is not MISSING
    raise ValueError(f"unknown condition {cond!r}")


# ---------------------------------------------------------------- simple transforms

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def _hh_split(text: str) -> list[tuple[str, int, int]]:
    """The turns of an hh-rlhf dialogue as (role, start, end) of their text in `text`.

    The upstream format: each turn is preceded by "\n\nHuman: " or "\n\nAssistant: " and
    the speakers alternate, starting with Human. So only a separator that switches speaker
    starts a turn; "Human:" or "Assistant:" anywhere else (inside a sentence, at the start
    of a turn, or a repeated separator of the same speaker) is text of the current turn."""
    if text.startswith(("Human: ", "Assistant: ")):
        text = "\n\n" + text  # a dialogue saved without its leading blank line
        shift = 2
    else:
        shift = 0
    turns: list[list] = []
    for m in _HH_TURN.finditer(text):
        role = _HH_ROLES[m.group(1)]
        if not turns:
            if text[:m.start()].strip() or role != "user":
                break
        elif role == turns[-1][0]:
            continue
        else:
            turns[-1][2] = m.start() - shift
        turns.append([role, m.end() - shift, None])
    if not turns:
        raise ValueError("not an hh-rlhf dialogue (expected '\\n\\nHuman: ...\\n\\nAssistant: ...')")
    turns[-1][2] = len(text) - shift
    return [tuple(t) for t in turns]


def hh_turns(text: str) -> list[dict]:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> [{role: user, ...}, {role: assistant, ...}]."""
    turns = _hh_split(text)
    return [{"role": r, "content": text[a:b]} for r, a, b in turns]


def _hh_pair(chosen: str, rejected: str) -> tuple[list[dict], str, str]:
    """(prompt turns, chosen answer, rejected answer). Upstream, the two dialogues share every
    turn before the final assistant answer. The answer starts at the last assistant turn both
    share the position of, and runs to the end of the text: an answer that itself writes
    "\\n\\nHuman: ..." is still one turn. At least one of the two must end in that turn, else
    the dialogues diverge earlier (not a pair)."""
    a, b = _hh_split(chosen), _hh_split(rejected)
    ta = [(r, chosen[x:y]) for r, x, y in a]
    tb = [(r, rejected[x:y]) for r, x, y in b]
    common = 0
    while common < min(len(ta), len(tb)) and ta[common] == tb[common]:
        common += 1
    p = min(common, len(ta) - 1, len(tb) - 1)
    while p >= 0 and not (ta[p][0] == tb[p][0] == "assistant"):
        p -= 1
    if p < 1 or (p != len(ta) - 1 and p != len(tb) - 1):
        raise ValueError("chosen and rejected do not share the dialogue before the last assistant turn")
    prompt = [{"role": r, "content": c} for r, c in ta[:p]]
    return prompt, chosen[a[p][1]:], rejected[b[p][1]:]


def hh_prompt(chosen: str, rejected: str) -> list[dict]:
    """The shared dialogue before the final assistant turn of both answers."""
    return _hh_pair(chosen, rejected)[0]


def hh_answer(text: str, other: str) -> str:
    """The final assistant answer of `text`, paired with `other` (see _hh_pair)."""
    return _hh_pair(text, other)[1]


def hh_last(text: str) -> str:
    turns = hh_turns(text)
    if turns[-1]["role"] != "assistant":
        raise ValueError("the dialogue does not end with an assistant turn")
    return turns[-1]["content"]


def passages(ps) -> str:
    """FineGrainedRLHF passages ([[title, sentence, ...], ...]) as readable context."""
    return "\n\n".join(f"{p[0]}: {' '.join(p[1:])}" for p in ps)


def mean(xs) -> float:
    xs = [float(x) for x in xs]
    if not xs:
        raise ValueError("mean of an empty list")
    return sum(xs) / len(xs)


def _text(content) -> str:
    """A message's content as text: a string, or the text parts of a list ([{type: text, text}])."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", p.get("content")) for p in content if isinstance(p, dict) and p.get("type") in ("text", None)]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise ValueError(f"message content is not text: {json.dumps(content, ensure_ascii=False)[:200]}")


_LC_ROLES = {"HumanMessage": "user", "human": "user", "AIMessage": "assistant", "ai": "assistant",
             "SystemMessage": "system", "system": "system", "ToolMessage": "tool", "tool": "tool",
             "AIMessageChunk": "assistant", "ChatMessage": None, "user": "user", "assistant": "assistant"}


def _message(m) -> dict:
    """{role, content} from an OpenAI-style message or a LangChain one (serialized
    {lc, id: [..., "HumanMessage"], kwargs: {content}} or {type: human, content})."""
    if not isinstance(m, dict):
        raise ValueError(f"a message must be an object, got {type(m).__name__}")
    if "role" in m and "content" in m:
        return {"role": m["role"], "content": _text(m["content"])}
    if m.get("lc") and isinstance(m.get("kwargs"), dict):
        role = _LC_ROLES.get((m.get("id") or [""])[-1]) or m["kwargs"].get("role")
        return {"role": role, "content": _text(m["kwargs"].get("content"))}
    if "type" in m and "content" in m:
        return {"role": _LC_ROLES.get(m["type"], m["type"]), "content": _text(m["content"])}
    raise ValueError(f"not a chat message: {json.dumps(m, ensure_ascii=False)[:200]}")


def chat(messages) -> list[dict]:
    """Chat messages reduced to {role, content} text (tool calls and weights dropped)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ValueError("expected a non-empty list of messages")
    return [_message(m) for m in messages]


def chat_prompt(messages) -> list[dict] | str:
    """Every turn before the final assistant answer (a string stays one user turn)."""
    if isinstance(messages, str):
        return messages
    msgs = chat(messages)
    if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
        raise ValueError("the conversation does not end with an assistant answer after a prompt")
    return msgs[:-1]


def chat_answer(messages) -> str:
    """The text of the final assistant message (or the string itself, for TRL's standard format)."""
    if isinstance(messages, str):
        return messages
    last = chat(messages)[-1]
    if last["role"] != "assistant":
        raise ValueError(f"the last message is {last['role']!r}, not the assistant's answer")
    return last["content"]


def run_messages(inputs) -> list[dict] | str:
    """A LangSmith run's inputs as chat messages: {messages: [...]} (OpenAI wrapper), {messages:
    [[...]]} (LangChain chat model), {prompts: [str]} (LLM), or one text field (a chain)."""
    if not isinstance(inputs, dict):
        raise ValueError("inputs must be an object")
    msgs = inputs.get("messages")
    if isinstance(msgs, list) and msgs and isinstance(msgs[0], list):
        msgs = msgs[0]
    if isinstance(msgs, list) and msgs:
        return chat(msgs)
    prompts = inputs.get("prompts")
    if isinstance(prompts, list) and prompts and isinstance(prompts[0], str):
        return prompts[0]
    for k in ("input", "question", "query", "prompt", "text"):
        if isinstance(inputs.get(k), str):
            return inputs[k]
    raise ValueError(f"no messages, prompts or text field in inputs (keys: {sorted(inputs)[:10]})")


def run_output(outputs) -> str:
    """A LangSmith run's output text: generations[0][0] (LangChain), choices[0] (OpenAI), or one
    text field (a chain)."""
    if not isinstance(outputs, dict):
        raise ValueError("the run has no outputs (it failed, or is still running)")
    gens = outputs.get("generations")
    if isinstance(gens, list) and gens:
        g = gens[0][0] if isinstance(gens[0], list) and gens[0] else gens[0]
        if isinstance(g, dict):
            if isinstance(g.get("text"), str) and g["text"]:
                return g["text"]
            if isinstance(g.get("message"), dict):
                return _message(g["message"])["content"]
    choices = outputs.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return _message(choices[0].get("message") or {})["content"]
    for k in ("output", "answer", "content", "text", "result"):
        v = outputs.get(k)
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and "content" in v:
            return _text(v["content"])
    raise ValueError(f"no generations, choices or text field in outputs (keys: {sorted(outputs)[:10]})")


def correction_text(c) -> str:
    """A LangSmith correction as the edited text: a string, or its output/answer/content field."""
    if isinstance(c, str):
        return c
    if isinstance(c, dict):
        for k in ("output", "answer", "content", "text", "outputs"):
            if k in c:
                return correction_text(c[k])
    raise ValueError("correction holds no text (expected a string or {output: ...})")


def unmapped(what) -> None:
    raise ValueError(f"{what} has no rule in this mapping (copy it and add one)")


FUNCTIONS = {
    "chat": chat,
    "chat_prompt": chat_prompt,
    "chat_answer": chat_answer,
    "run_messages": run_messages,
    "run_output": run_output,
    "correction_text": correction_text,
    "unmapped": unmapped,
    "hh_prompt": hh_prompt,
    "hh_last": hh_last,
    "hh_answer": hh_answer,
    "passages": passages,
    "mean": mean,
    "strip": lambda s: s.strip(),
    "lower": lambda s: s.lower(),
    "str": str,
    "float": float,
    "json": lambda v: json.dumps(v, ensure_ascii=False),
}


# ---------------------------------------------------------------- applying a mapping

def is_openai_record(rec: dict) -> bool:
    """Chat-completion log: request `messages` + response `choices` (flat or nested)."""
    if "choices" in rec and "messages" in rec:
        return True
    req, resp = rec.get("request"), rec.get("response")
    return isinstance(req, dict) and "messages" in req and isinstance(resp, dict) and "choices" in resp


def map_record(mapping: dict, rec) -> list[dict]:
    """The native records one input record yields (MappingError when it cannot)."""
    out = []
    for section in ("interactions", "feedback"):
        for item in mapping.get(section) or []:
            if "when" in item and not condition(item["when"], rec, "when"):
                continue
            native = {}
            for k, e in item.items():
                if k == "when":
                    continue
                v = evaluate(e, rec, k)
                if v is not None:
                    native[k] = v
            out.append(native)
    return out


def apply_mapping(mapping: dict, path: Path, out: Path) -> int:
    """Write the native records of every input record in `path` to JSONL `out`, each with
    `_source_row`; records that cannot be mapped become quarantine markers."""
    from signals.adapters import READERS

    reader = READERS[mapping.get("reader", "jsonl")]
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for row, rec, raw, error in reader(path):
            if error is None:
                try:
                    natives = map_record(mapping, rec)
                except MappingError as e:
                    error = ("mapping_error", e.field, f"source {mapping['name']}: {e.detail}")
            if error is not None:
                reason, field, detail = error
                f.write(json.dumps({"_reject": reason, "_field": field, "_detail": detail,
                                    "_raw": raw, "_source_row": row}) + "\n")
                n += 1
                continue
            for native in natives:
                native["_source_row"] = row
                f.write(json.dumps(native) + "\n")
                n += 1
    return n
