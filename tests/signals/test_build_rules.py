"""The builder's rules, one at a time, on small stores written straight into the schema."""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from signals.build import build_snapshot, kto_weights
from signals.recipe import RecipeError, normalize
from signals.store import open_store
from tests.signals.store_helpers import T0, TinyStore


def rows(snap, kind, split=None):
    splits = [split] if split else ["train", "eval"]
    out = []
    for s in splits:
        out += pq.read_table(snap.file(kind, s)).to_pylist()
    return out


def text(msgs):
    return msgs[-1]["content"]


def build(store: TinyStore, tmp_path, **recipe):
    """Build with no eval split and no PII pass unless a test asks for them."""
    store.con.close()
    r = {"name": "t", "split": {"eval_fraction": 0.0}, "privacy": {"redact_pii": False}}
    for section, values in recipe.items():
        if isinstance(values, dict):
            r.setdefault(section, {}).update(values)
        else:
            r[section] = values
    snap = build_snapshot(r, store.path, tmp_path / "snaps")
    store.con = open_store(store.path)
    return snap


@pytest.fixture
def store(tmp_path):
    s = TinyStore(tmp_path / "s.duckdb")
    yield s
    s.close()


# ----------------------------------------------------------------------------- outcome


def test_latest_decisive_feedback_wins_and_edit_after_accept_is_an_edit(store, tmp_path):
    a = store.interaction("q1", "first answer")
    store.feedback(a, "reject")
    store.feedback(a, "accept")                      # latest: accept
    b = store.interaction("q2", "second answer")
    store.feedback(b, "accept")
    store.feedback(b, "edit", edited_text="a much better second answer")   # edit after accept
    c = store.interaction("q3", "third answer")
    store.feedback(c, "edit", edited_text="totally rewritten third")
    store.feedback(c, "reject")                      # reject after edit: reject
    snap = build(store, tmp_path)
    kto = {(r["interaction_id"], r["label"]): (r["origin"], text(r["completion"])) for r in rows(snap, "kto")}
    assert kto == {(a, True): ("accept", "first answer"),
                   (b, True): ("edit", "a much better second answer"), (b, False): ("edit", "second answer"),
                   (c, False): ("reject", "third answer")}
    sft = {r["interaction_id"]: text(r["messages"]) for r in rows(snap, "sft")}
    assert sft == {a: "first answer", b: "a much better second answer"}


def test_accept_after_edit_keeps_the_edit_unless_configured(store, tmp_path):
    a = store.interaction("q", "draft text here")
    store.feedback(a, "edit", edited_text="final text, edited by the user")
    store.feedback(a, "accept")
    snap = build(store, tmp_path)
    assert [text(r["messages"]) for r in rows(snap, "sft")] == ["final text, edited by the user"]
    snap = build(store, tmp_path, outcome={"accept_keeps_edit": False})
    assert [text(r["messages"]) for r in rows(snap, "sft")] == ["draft text here"]
    assert rows(snap, "pref") == []


def test_same_time_ties_prefer_edit_then_reject(store, tmp_path):
    t = T0 + timedelta(days=1)
    a = store.interaction("q1", "answer one")
    store.feedback(a, "accept", ts=t)
    store.feedback(a, "reject", ts=t)
    b = store.interaction("q2", "answer two")
    store.feedback(b, "reject", ts=t)
    store.feedback(b, "edit", edited_text="a rewritten answer two", ts=t)
    snap = build(store, tmp_path)
    labels = {(r["interaction_id"], r["label"]) for r in rows(snap, "kto")}
    assert labels == {(a, False), (b, True), (b, False)}


def test_ratings_map_to_accept_and_reject_by_thresholds(store, tmp_path):
    ids = {s: store.shown(f"q{s}", f"answer {s}", "rate", score=s) for s in (1, 2, 3, 4, 5)}
    snap = build(store, tmp_path)
    got = {r["interaction_id"]: r["label"] for r in rows(snap, "kto")}
    assert got == {ids[1]: False, ids[2]: False, ids[4]: True, ids[5]: True}   # 3 is not decisive
    assert all(r["origin"] == "rate" for r in rows(snap, "kto"))
    assert snap.manifest["exclusions"]["no_decisive_feedback"] == 1
    snap = build(store, tmp_path, outcome={"rate_accept_at": 5, "rate_reject_at": 3})
    got = {r["interaction_id"]: r["label"] for r in rows(snap, "kto")}
    assert got == {ids[1]: False, ids[2]: False, ids[3]: False, ids[5]: True}


def test_trivial_edits_make_no_pair_and_are_ignored_or_accepted(store, tmp_path):
    long = "The quarterly report shows revenue grew by eight percent across all regions this year."
    a = store.shown("q1", long, "edit", edited_text=long.replace("grew", "grew ") + "  ")   # whitespace only
    b = store.shown("q2", long, "edit", edited_text=long.replace("regions", "region"))    # 1 char of 87
    c = store.shown("q3", long, "edit", edited_text=long.replace("eight", "nine"))        # 5 chars: > 2%
    d = store.interaction("q4", long)
    store.feedback(d, "reject")
    store.feedback(d, "edit", edited_text=long + " ")                                    # trivial after reject
    snap = build(store, tmp_path)
    assert [(r["interaction_id"], text(r["chosen"]), text(r["rejected"])) for r in rows(snap, "pref")] == [
        (c, long.replace("eight", "nine"), long)]
    assert snap.manifest["exclusions"]["pref.trivial_edit"] == 3
    kto = {(r["interaction_id"], r["label"]) for r in rows(snap, "kto")}
    assert kto == {(c, True), (c, False), (d, False)}    # ignored: d's reject stands; a, b undecided
    snap = build(store, tmp_path, outcome={"trivial_edit": "accept"})
    kto = {(r["interaction_id"], r["label"]) for r in rows(snap, "kto")}
    assert kto == {(a, True), (b, True), (c, True), (c, False), (d, True)}
    assert len(rows(snap, "pref")) == 1
    snap = build(store, tmp_path, pref={"min_edit_distance": 0.0})    # every real change is a pair
    assert {r["interaction_id"] for r in rows(snap, "pref")} == {b, c}


def test_an_edit_to_empty_text_is_a_reject(store, tmp_path):
    a = store.shown("q", "some answer", "edit", edited_text="   ")
    snap = build(store, tmp_path)
    assert [(r["interaction_id"], r["label"]) for r in rows(snap, "kto")] == [(a, False)]
    assert rows(snap, "sft") == [] and rows(snap, "pref") == []


# ----------------------------------------------------------------------------- kinds


def test_sft_takes_accepted_completions_and_edited_texts_with_full_chat(store, tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    a = store.shown(chat, "Paris.", "accept")
    store.shown("other", "bad answer", "reject")
    snap = build(store, tmp_path)
    (r,) = rows(snap, "sft")
    assert r["messages"] == chat + [{"role": "assistant", "content": "Paris."}]
    assert (r["interaction_id"], r["origin"], r["app"], r["task"], r["user_id"]) == (a, "accept", "app", "task", "u1")
    snap = build(store, tmp_path, sft={"from_accept": False})
    assert rows(snap, "sft") == []
    snap = build(store, tmp_path, sft={"enabled": False}, kto={"enabled": False})
    assert rows(snap, "sft") == [] and rows(snap, "kto") == []
    assert pq.read_schema(snap.file("kto", "train")).names[:3] == ["prompt", "completion", "label"]


def test_explicit_choices_become_pairs(store, tmp_path):
    a = store.interaction("Pick a slogan", "Fresh every day")
    b = store.interaction("Pick a slogan", "Bread")
    store.feedback(a, "choose", other=b)
    x = store.interaction("Question one", "answer x")
    y = store.interaction("Question two", "answer y")       # another prompt: no pair by default
    store.feedback(x, "choose", other=y)
    snap = build(store, tmp_path)
    (p,) = rows(snap, "pref")
    assert p["prompt"] == [{"role": "user", "content": "Pick a slogan"}]
    assert (text(p["chosen"]), text(p["rejected"]), p["origin"], p["interaction_id"]) == (
        "Fresh every day", "Bread", "choose", a)
    assert len(p["chosen"]) == len(p["rejected"]) == 1 and p["chosen"][0]["role"] == "assistant"
    assert snap.manifest["exclusions"]["pref.choose_prompt_mismatch"] == 1
    assert rows(snap, "kto") == []                          # a choice is not an accept by default
    snap = build(store, tmp_path, outcome={"choose_as_outcome": True}, pref={"choose_same_prompt": False})
    assert len(rows(snap, "pref")) == 2
    assert {(r["interaction_id"], r["label"]) for r in rows(snap, "kto")} == {(a, True), (b, False),
                                                                              (x, True), (y, False)}


def test_a_later_choice_between_the_same_two_overrides_the_earlier(store, tmp_path):
    a = store.interaction("Pick", "option A")
    b = store.interaction("Pick", "option B")
    store.feedback(a, "choose", other=b)
    store.feedback(b, "choose", other=a)
    snap = build(store, tmp_path)
    assert [(text(r["chosen"]), text(r["rejected"])) for r in rows(snap, "pref")] == [("option B", "option A")]


def test_regenerations_pair_accepted_with_rejected_outputs_of_the_same_prompt(store, tmp_path):
    acc = [store.shown("  Write a haiku ", f"good haiku {i}", "accept", user=f"u{i}") for i in range(3)]
    rej = [store.shown("write a HAIKU", f"bad haiku {i}", "reject", user=f"u{i}") for i in range(2)]
    store.shown("something else", "lonely reject", "reject")
    snap = build(store, tmp_path)
    pairs = rows(snap, "pref")
    assert len(pairs) == 2 and {r["origin"] for r in pairs} == {"regen"}
    assert {r["interaction_id"] for r in pairs} < set(acc)
    assert {text(r["rejected"]) for r in pairs} == {"bad haiku 0", "bad haiku 1"}
    assert len(rows(build(store, tmp_path, pref={"max_regen_pairs": 1}), "pref")) == 1
    by_user = rows(build(store, tmp_path, pref={"regen_within": "user"}), "pref")   # u0/u1 have both
    assert {(text(r["chosen"]), text(r["rejected"])) for r in by_user} == {
        ("good haiku 0", "bad haiku 0"), ("good haiku 1", "bad haiku 1")}
    assert rows(build(store, tmp_path, pref={"regen_within": "session"}), "pref") != []
    assert rows(build(store, tmp_path, pref={"from_regen": False}), "pref") == []
    assert rej


def test_kto_rows_and_weights_follow_trl_guidance(store, tmp_path):
    for i in range(6):
        store.shown(f"q{i}", f"fine {i}", "reject")
    store.shown("qa", "great", "accept")
    store.shown("qe", "old text here", "edit", edited_text="completely new text")
    snap = build(store, tmp_path)
    assert snap.manifest["kto_classes"]["train"] == {"desirable": 2, "undesirable": 7}
    w = snap.manifest["kto_weights"]
    assert w == kto_weights({"desirable": 2, "undesirable": 7})
    # TRL's own check (KTOTrainer): lambda_D * n_D / (lambda_U * n_U) in [1, 4/3]
    ratio = w["desirable_weight"] * 2 / (w["undesirable_weight"] * 7)
    assert 1 <= ratio <= 4 / 3
    snap = build(store, tmp_path, kto={"desirable_weight": 2.0})
    assert snap.manifest["kto_weights"]["desirable_weight"] == 2.0


@pytest.mark.parametrize("n_d,n_u", [(1, 1), (10, 1), (1, 10), (13, 10), (14, 10), (999, 1000), (3, 0)])
def test_kto_weights_land_in_trl_range(n_d, n_u):
    w = kto_weights({"desirable": n_d, "undesirable": n_u})
    if n_d and n_u:
        lo_d, hi_d = round(n_u * w["undesirable_weight"] / n_d, 2), round(n_u * w["undesirable_weight"] / n_d * 1.33, 2)
        lo_u = round(n_d * w["desirable_weight"] / n_u / 1.33, 2)
        hi_u = round(n_d * w["desirable_weight"] / n_u, 2)
        assert lo_d <= w["desirable_weight"] <= hi_d or lo_u <= w["undesirable_weight"] <= hi_u
    assert min(w.values()) == 1.0


# ----------------------------------------------------------------------------- filters, caps, dedup


def test_filters_exclude_with_reasons(store, tmp_path):
    keep = store.shown("keep me please", "kept answer", "accept", app="a1", task="t1", model="m1", user="u1")
    store.shown("other app", "x answer", "accept", app="a2")
    store.shown("other task", "x answer", "accept", app="a1", task="t2")
    store.shown("other model", "x answer", "accept", app="a1", task="t1", model="m2")
    store.shown("other user", "x answer", "accept", app="a1", task="t1", model="m1", user="u2")
    store.shown("too old", "x answer", "accept", app="a1", task="t1", model="m1", ts=T0 - timedelta(days=9))
    store.shown("x", "short prompt", "accept", app="a1", task="t1", model="m1")
    store.shown("long enough prompt", "y", "accept", app="a1", task="t1", model="m1")
    snap = build(store, tmp_path, filters={
        "apps": ["a1"], "tasks": ["t1"], "models": ["m1"], "exclude_users": ["u2"],
        "since": "2026-01-01T00:00:00+00:00", "min_prompt_chars": 3, "min_completion_chars": 2})
    assert [r["interaction_id"] for r in rows(snap, "sft")] == [keep]
    ex = snap.manifest["exclusions"]
    assert {k: ex[k] for k in ex if k.startswith("filter:")} == {
        "filter:app": 1, "filter:task": 1, "filter:model": 1, "filter:user": 1, "filter:time": 1,
        "filter:prompt_length": 1, "filter:completion_length": 1}
    snap = build(store, tmp_path, filters={"users": ["u2"], "until": "2026-01-01T00:00:00Z"})
    assert rows(snap, "sft") == []
    assert snap.manifest["exclusions"]["filter:time"] == 7


def test_invalid_prompts_are_excluded_not_crashed_on(store, tmp_path):
    store.con.execute("INSERT INTO interactions (interaction_id, ts, prompt, completion) VALUES "
                      "('bad1', ?, '\"not a list\"', 'x y'), ('bad2', ?, '[{\"role\":\"assistant\",\"content\":\"hi\"}]', 'x y')",
                      [T0, T0])
    store.feedback("bad1", "accept")
    store.feedback("bad2", "accept")
    snap = build(store, tmp_path)
    assert snap.manifest["exclusions"]["invalid:prompt"] == 2


def test_exact_duplicates_are_dropped_and_the_per_user_cap_applies(store, tmp_path):
    store.shown("Same   prompt", "same answer", "accept", user="u1")
    store.shown("same prompt", "same answer", "accept", user="u2")      # duplicate after normalization
    store.shown("same prompt", "another answer", "accept", user="u2")
    for i in range(10):
        store.shown(f"heavy user {i}", f"answer {i}", "accept", user="heavy")
    snap = build(store, tmp_path)
    assert len(rows(snap, "sft")) == 12 and snap.manifest["exclusions"]["sft.duplicate"] == 1
    snap = build(store, tmp_path, caps={"per_user": 3})
    by_user = {}
    for r in rows(snap, "sft"):
        by_user[r["user_id"]] = by_user.get(r["user_id"], 0) + 1
    assert by_user == {"u1": 1, "u2": 1, "heavy": 3}
    assert snap.manifest["exclusions"]["sft.user_cap"] == 7
    again = build(store, tmp_path, caps={"per_user": 3})
    assert again.version == snap.version                      # the cap's sample is stable
    snap = build(store, tmp_path, caps={"dedup": False})
    assert len(rows(snap, "sft")) == 13


# ----------------------------------------------------------------------------- splits


def _mixed_store(store, n=60):
    for i in range(n):
        store.shown(f"prompt number {i % 40}", f"answer {i}", "accept", user=f"user{i % 9}",
                    session=f"sess{i % 11}")


def test_hash_split_is_by_normalized_prompt_and_deterministic(store, tmp_path):
    _mixed_store(store)
    snap = build(store, tmp_path, split={"eval_fraction": 0.3})
    train = {text(r["messages"][:-1]) for r in rows(snap, "sft", "train")}
    evals = {text(r["messages"][:-1]) for r in rows(snap, "sft", "eval")}
    assert train and evals and not train & evals
    assert build(store, tmp_path, split={"eval_fraction": 0.3}).version == snap.version
    other = build(store, tmp_path, split={"eval_fraction": 0.3, "seed": 1})
    assert other.version != snap.version


@pytest.mark.parametrize("method,key", [("user", "user_id"), ("session", None)])
def test_group_splits_keep_a_group_on_one_side_and_decontaminate(store, tmp_path, method, key):
    _mixed_store(store)
    snap = build(store, tmp_path, split={"method": method, "eval_fraction": 0.4})
    train, evals = rows(snap, "sft", "train"), rows(snap, "sft", "eval")
    assert train and evals
    if key:
        assert not {r[key] for r in train} & {r[key] for r in evals}
    # prompts repeat across users/sessions: decontamination removed them from train
    assert not {text(r["messages"][:-1]) for r in train} & {text(r["messages"][:-1]) for r in evals}
    assert snap.manifest["exclusions"]["sft.decontaminated"] > 0
    kept_eval = build(store, tmp_path, split={"method": method, "eval_fraction": 0.4, "decontaminate": "drop_eval"})
    assert len(rows(kept_eval, "sft", "train")) > len(train)
    assert not ({text(r["messages"][:-1]) for r in rows(kept_eval, "sft", "train")}
                & {text(r["messages"][:-1]) for r in rows(kept_eval, "sft", "eval")})


def test_time_split_by_cutoff_or_newest_fraction(store, tmp_path):
    ids = [store.shown(f"prompt {i}", f"answer {i}", "accept", ts=T0 + timedelta(days=i)) for i in range(10)]
    snap = build(store, tmp_path, split={"method": "time", "cutoff": "2026-01-08T00:00:00Z"})
    assert [r["interaction_id"] for r in rows(snap, "sft", "eval")] == ids[7:]
    snap = build(store, tmp_path, split={"method": "time", "eval_fraction": 0.2})
    assert [r["interaction_id"] for r in rows(snap, "sft", "eval")] == ids[8:]


def test_decontamination_spans_kinds(store, tmp_path):
    """A prompt in eval for one kind is not in train for another kind."""
    store.shown("shared prompt", "good", "accept", user="a", ts=T0)
    store.shown("shared prompt", "bad one", "reject", user="b", ts=T0 + timedelta(days=5))
    snap = build(store, tmp_path, split={"method": "time", "cutoff": "2026-01-03T00:00:00Z"})
    train_prompts = {json.dumps(r["prompt"]) for r in rows(snap, "kto", "train")}
    train_prompts |= {json.dumps(r["messages"][:-1]) for r in rows(snap, "sft", "train")}
    eval_prompts = {json.dumps(r["prompt"]) for r in rows(snap, "kto", "eval")}
    assert eval_prompts and not train_prompts & eval_prompts


def test_benchmark_prompts_never_reach_train(store, tmp_path):
    store.shown([{"role": "system", "content": "sys"}, {"role": "user", "content": "What is  the capital of Peru?"}],
                "Lima", "accept")
    store.shown("Name a prime number", "7", "accept")
    store.shown("unrelated", "ok fine", "accept")
    bench_txt = tmp_path / "bench.txt"
    bench_txt.write_text("what is the capital of peru?\n")
    bench_jsonl = tmp_path / "bench.jsonl"
    bench_jsonl.write_text(json.dumps({"prompt": [{"role": "user", "content": "Name a PRIME number"}]}) + "\n")
    snap = build(store, tmp_path, split={"benchmark_prompts": str(bench_txt)})
    assert {text(r["messages"]) for r in rows(snap, "sft")} == {"7", "ok fine"}
    assert snap.manifest["exclusions"]["sft.benchmark"] == 1
    snap = build(store, tmp_path, split={"benchmark_prompts": str(bench_jsonl)})
    assert {text(r["messages"]) for r in rows(snap, "sft")} == {"Lima", "ok fine"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        build(store, tmp_path, split={"benchmark_prompts": str(bad)})


# ----------------------------------------------------------------------------- privacy


def test_optouts_tombstones_and_retention_are_excluded(store, tmp_path):
    store.shown("hello there", "from alice", "accept", user="alice")
    store.shown("hello there", "from bob", "accept", user="bob")
    store.shown("hello there", "from carol", "accept", user="carol")
    store.shown("hello there", "ancient", "accept", user="dave", ts=T0 - timedelta(days=400))
    store.optout("alice")
    store.tombstone("bob")
    snap = build(store, tmp_path, privacy={"retention_days": 365, "as_of": "2026-01-02T00:00:00Z"})
    assert [r["user_id"] for r in rows(snap, "sft")] == ["carol"]
    ex = snap.manifest["exclusions"]
    assert (ex["privacy:optout"], ex["privacy:forgotten"], ex["privacy:retention"]) == (1, 1, 1)
    store.setting("retention_days", "365")           # the store's policy applies when the recipe has none
    snap = build(store, tmp_path, privacy={"as_of": "2026-01-02T00:00:00Z"})
    assert snap.manifest["exclusions"]["privacy:retention"] == 1


def test_pii_is_redacted_in_prompts_and_texts_with_counts(store, tmp_path):
    store.shown([{"role": "system", "content": "Support bot"},
                 {"role": "user", "content": "I am bob@example.com, call +1 415-555-0132"}],
                "Sure, we will email bob@example.com", "edit", edited_text="We will call +1 415-555-0132 today.")
    store.shown("Version 1.2.3 costs $19.99 in 2024", "Yes, in 2024.", "accept")
    snap = build(store, tmp_path, privacy={"redact_pii": True})
    blob = json.dumps([rows(snap, k) for k in ("sft", "pref", "kto")])
    assert "bob@example.com" not in blob and "415-555-0132" not in blob
    assert "[EMAIL]" in blob and "[PHONE]" in blob and "Version 1.2.3 costs $19.99 in 2024" in blob
    pref = rows(snap, "pref")[0]
    assert pref["prompt"][0] == {"role": "system", "content": "Support bot"}
    assert pref["prompt"][1]["content"] == "I am [EMAIL], call [PHONE]"
    assert snap.manifest["redactions"] == {"email": 2, "phone": 2}


def test_pii_behind_json_escapes_in_prompts_is_redacted(store, tmp_path):
    """The store keeps prompts as JSON text, with newlines and non-ASCII escaped: still found."""
    arabic = "\u0664\u0661\u0665-\u0665\u0665\u0665-\u0660\u0661\u0663\u0662"
    store.shown("call me on\n415\n555\n0132 please", "ok", "accept")
    store.shown(f"or on {arabic}", "ok!", "accept")
    store.shown("nothing here", "fine", "accept")
    snap = build(store, tmp_path, privacy={"redact_pii": True})
    prompts = sorted(r["messages"][0]["content"] for r in rows(snap, "sft"))
    assert prompts == ["call me on\n[PHONE] please", "nothing here", "or on [PHONE]"]
    assert snap.manifest["redactions"] == {"phone": 2}


def test_text_normalization_collapses_whitespace_runs_and_trims_unicode_spaces():
    import duckdb

    from signals.build.steps import sql

    con = duckdb.connect()
    con.execute(sql("build_macros"))
    cases = {" a  b ": "a b", "a\tb\n": "a b", "\u00a0a": "a", "a\u3000": "a", "a\u2009b": "a\u2009b",
             "a b": "a b", "": "", "\u00e9t\u00e9 ": "\u00e9t\u00e9", " \u00a0x": "x"}
    for text, want in cases.items():
        assert con.execute("SELECT build_normalize(?)", [text]).fetchone()[0] == want, repr(text)


def test_pii_prefilter_never_skips_a_text_the_redactor_changes():
    """The SQL prefilter must be a superset of signals.pii's patterns."""
    import random

    import duckdb

    from signals import pii
    from signals.build.redact import PII_PREFILTER

    samples = ["mail bob@example.com", "+1 415-555-0132", "4111 1111 1111 1111", "10.0.0.1", "fe80::1",
               "sk-" + "a" * 24, "AKIA" + "B" * 16, "ghp_" + "c" * 36, "xoxb-1234567890ab", "AIza" + "d" * 35,
               "hf_" + "e" * 30, "eyJabcdefgh.ijklmnopq.rstuvwxyz", "Bearer " + "f" * 24, "github_pat_" + "g" * 22,
               "2001:db8:85a3::8a2e:370:7334"]
    # Python's \d and \s are Unicode-wide: Arabic-Indic and full-width digits, NBSP, tab, newline
    samples += ["call +1\u00a0415\u00a0555\u00a00132", "\u0664\u0661\u0665-\u0665\u0665\u0665-\u0660\u0661\u0663\u0662",
                "\uff14\uff11\uff11\uff11" + "\uff11" * 12, "415\t555\x0b0132", "12\n34 56"]
    rng = random.Random(0)
    alphabet = "ab@.:-_ 0123456789eyJxoAIzaKhfsk+()\u00a0\t\n\u0661\uff12"
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 40))) for _ in range(3000)]
    digits = ["0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"]
    for _ in range(3000):      # digit groups and separators: phones, cards, IPs and near misses
        d = rng.choice(digits)
        groups = ["".join(rng.choice(d) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 6))]
        samples.append(rng.choice(["", "+", "(", "x "]) + "".join(
            g + rng.choice([" ", ".", "-", "\u00a0", "\t", "\n", ":", "/", ""]) for g in groups).strip())
    con = duckdb.connect()
    changed = 0
    for s in samples:
        if pii.redact(s)[0] != s:
            changed += 1
            assert con.execute("SELECT regexp_matches(?, ?)", [s, PII_PREFILTER]).fetchone()[0], repr(s)
    assert changed > 200
    # and it is narrow enough to be worth it: ordinary numbers skip the Python pass
    for s in ["order 12345 shipped in 2024 for $250", "Note: see version 1.2", "meet at 10 am"]:
        assert not con.execute("SELECT regexp_matches(?, ?)", [s, PII_PREFILTER]).fetchone()[0], s


# ----------------------------------------------------------------------------- recipes


def test_recipe_problems_are_all_reported_at_once():
    with pytest.raises(RecipeError) as e:
        normalize({"name": "x", "split": {"method": "random", "eval_fraction": 2}, "filtres": {},
                   "caps": {"per_user": "ten"}, "outcome": {"rate_accept_at": 1, "rate_reject_at": 3},
                   "filters": {"since": "yesterday"}})
    msg = str(e.value)
    for needle in ("split.method", "split.eval_fraction", "unknown key 'filtres' (did you mean filters?)", "caps.per_user",
                   "rate_reject_at", "filters.since"):
        assert needle in msg, needle
    assert normalize({"name": "x"})["split"]["method"] == "hash"


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_the_recipe_schema_is_written_once_and_every_recipe_starts_from_it():
    """`signals.recipe.Recipe` is `conf/data/base` (ConfigStore): no YAML copy of the options."""
    from omegaconf import OmegaConf

    from signals.recipe import DEFAULTS, Recipe
    from tests.conftest import ROOT

    assert not (ROOT / "conf" / "data" / "base.yaml").exists()
    assert OmegaConf.to_container(OmegaConf.structured(Recipe)) == DEFAULTS
    for path in (ROOT / "conf" / "data").glob("*.yaml"):
        assert "- base" in path.read_text(), f"{path} does not start from the schema"
    assert normalize({"name": "base"}) == {**DEFAULTS, "name": "base"}


def test_every_recipe_composes_and_validates():
    from signals.build_cli import compose_recipe
    from tests.conftest import ROOT

    names = sorted(p.stem for p in (ROOT / "conf" / "data").glob("*.yaml"))
    assert {"demo", "smoke", "defacto", "hh-rlhf", "mlqe-pe", "mlqe-da", "finegrained-qa"} <= set(names)
    for name in names:
        recipe, store, root = compose_recipe([f"data={name}"])
        assert normalize(recipe)["name"] == name
    recipe, _, _ = compose_recipe(["data=defacto", "split.method=user", "data.caps.per_user=5"])
    assert recipe["split"]["method"] == "user" and recipe["caps"]["per_user"] == 5
