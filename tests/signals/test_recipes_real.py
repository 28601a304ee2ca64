"""Real data sets (../shared/data/real): each `data=NAME` recipe, built from a store that
`signals ingest --source NAME` filled, gives the counts computed here independently from
the raw files (own parsers, own Levenshtein), per the recipe's rules:

- outcome: latest decisive feedback; an edit within 2% (normalized Levenshtein, whitespace
  collapsed) is trivial: no pair, and it is ignored (defacto) or an accept (mlqe-pe);
- SFT = accepted completions + edited texts; pairs = non-trivial edits + choices;
  KTO = accept/reject, edit -> both; exact de-duplication per kind.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from signals.build import build_snapshot
from signals.build_cli import compose_recipe

WS = re.compile(r"[\t\n\f\r ]+")        # RE2's \s, as the builder's SQL uses it
SOURCES = {
    "defacto": ["defacto"],
    "hh-rlhf": ["hh-rlhf"],
    "mlqe-pe": ["mlqe-pe/post-editing"],
    "mlqe-da": ["mlqe-pe/direct-assessments"],
    "finegrained-qa": ["finegrained-rlhf-qa-feedback"],
}


def norm(s: str) -> str:
    return WS.sub(" ", s.lower()).strip(" ")


def ws(s: str) -> str:
    return WS.sub(" ", s).strip(" ")


def lev_at_most(a: str, b: str, k: int) -> bool:
    """Levenshtein(a, b) <= k, by a DP restricted to the diagonal band of width k."""
    n, m = len(a), len(b)
    if k < 0 or abs(n - m) > k:
        return False
    big = k + 1
    prev = [j if j <= k else big for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [big] * (m + 1)
        if i <= k:
            cur[0] = i
        for j in range(max(1, i - k), min(m, i + k) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]), big)
        prev = cur
    return prev[m] <= k


def trivial(edit: str, original: str, t: float = 0.02) -> bool:
    e, c = ws(edit), ws(original)
    if e == c:
        return True
    if not e:
        return False
    limit = t * max(len(e), len(c))          # trivial: distance < limit
    return lev_at_most(e, c, math.ceil(limit) - 1)


class Expected:
    """Example keys per kind; sets do the exact de-duplication."""

    def __init__(self):
        self.sft, self.pref, self.kto = set(), set(), set()
        self.trivial = 0

    def outcome(self, key, completion, outcome, edited=None):
        if outcome == "accept":
            self.sft.add((key, completion))
            self.kto.add((key, completion, True))
        elif outcome == "reject":
            self.kto.add((key, completion, False))
        elif outcome == "edit":
            self.sft.add((key, edited))
            self.pref.add((key, edited, completion))
            self.kto.add((key, edited, True))
            self.kto.add((key, completion, False))

    def counts(self, sft=True):
        return {"sft": len(self.sft) if sft else 0, "pref": len(self.pref), "kto": len(self.kto)}


# ----------------------------------------------------------------------------- raw readers


def expect_defacto(root: Path) -> Expected:
    """One interaction per (article, abstract, candidate), as conf/source/defacto.yaml keys it; a
    row seen twice pools its judgements: reject beats accept at the same time, and a later
    non-trivial correction beats both."""
    x = Expected()
    pooled: dict[tuple[str, str, str], dict] = {}
    for name in ("train.jsonl", "val.jsonl"):
        for line in (root / "defacto" / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            p = pooled.setdefault((r["article"], r["abstract"], r["candidate"]), {"error": False, "corr": ""})
            p["error"] |= r["has_error"]
            p["corr"] = p["corr"] or r["feedback"]["summary"]
    for (article, _, cand), p in pooled.items():
        key, corr = norm(article), p["corr"]
        if corr and not trivial(corr, cand):
            x.outcome(key, cand, "edit", corr)          # the edit comes after the judgement
            continue
        x.trivial += bool(corr)
        x.outcome(key, cand, "reject" if p["error"] else "accept")
    return x


def hh_split(dialogue: str) -> tuple[str, str]:
    cut = dialogue.rindex("\n\nAssistant: ")
    return dialogue[:cut], dialogue[cut + len("\n\nAssistant: "):]


def expect_hh(root: Path) -> Expected:
    x = Expected()
    rows = set()
    with gzip.open(root / "hh-rlhf" / "harmless-base-test.first500.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            rows.add((r["chosen"], r["rejected"]))
    for chosen, rejected in rows:
        prefix, good = hh_split(chosen)
        _, bad = hh_split(rejected)
        key = norm(prefix)
        if good:                                   # an empty answer is excluded (min_completion_chars)
            x.kto.add((key, good, True))           # choose_as_outcome: chosen = accept
        if bad:
            x.kto.add((key, bad, False))
        if good and bad and good != bad:
            x.pref.add((key, good, bad))
    return x


def _tar_texts(path: Path) -> dict[str, str]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read().decode("utf-8") for m in tar.getmembers() if m.isfile()}


def expect_mlqe_pe(root: Path) -> Expected:
    x = Expected()
    for tgz in sorted((root / "mlqe-pe" / "post-editing").rglob("*.tar.gz")):
        files = _tar_texts(tgz)
        for mt_name in (n for n in files if n.endswith(".mt")):
            stem = mt_name[:-3]
            pair = Path(stem).parent.name.rsplit("-", 1)[0]
            src, mt, pe = (files[f"{stem}.{e}"].split("\n") for e in ("src", "mt", "pe"))
            for s, m, p in zip(src, mt, pe, strict=False):
                if not m and not s:
                    continue
                key = (pair, norm(s))
                if p == m:
                    x.outcome(key, m, "accept")
                elif trivial(p, m):                # recipe: a trivial post-edit approves the output
                    x.trivial += 1
                    x.outcome(key, m, "accept")
                else:
                    x.outcome(key, m, "edit", p)
    return x


def expect_mlqe_da(root: Path) -> Expected:
    x = Expected()
    for tgz in sorted((root / "mlqe-pe" / "direct-assessments").rglob("*.tar.gz")):
        for name, text in _tar_texts(tgz).items():
            if not name.endswith(".df.short.tsv"):
                continue
            pair = Path(name).parent.name.rsplit("-", 1)[0]
            for r in csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE):
                scores = json.loads(r["scores"])
                mean = sum(float(s) for s in scores) / len(scores)
                if mean >= 75:
                    x.outcome((pair, norm(r["original"])), r["translation"], "accept")
                elif mean <= 50:
                    x.outcome((pair, norm(r["original"])), r["translation"], "reject")
    return x


def expect_finegrained(root: Path) -> Expected:
    x = Expected()
    pairs = [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]
    for q in json.loads((root / "finegrained-rlhf-qa-feedback" / "dev_feedback.first100.json").read_text()):
        key = (norm(q["question"]), json.dumps(q["passages"]))
        pred = {i: q[f"prediction {i}"] for i in range(1, 5)}
        for (a, b), p in zip(pairs, q["preference"], strict=True):
            if p not in (1, 2):
                continue
            won, lost = (pred[a], pred[b]) if p == 1 else (pred[b], pred[a])
            if won and lost and won != lost:
                x.pref.add((key, won, lost))
        corr = q["feedback"].get("corrected-prediction") or ""
        if corr and pred[1] and not trivial(corr, pred[1]):
            x.outcome(key, pred[1], "edit", corr)
        elif corr:
            x.trivial += 1
    return x


EXPECT = {"defacto": expect_defacto, "hh-rlhf": expect_hh, "mlqe-pe": expect_mlqe_pe,
          "mlqe-da": expect_mlqe_da, "finegrained-qa": expect_finegrained}


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def real_store(real_data, tmp_path_factory):
    from signals.ingest import ingest_paths

    db = tmp_path_factory.mktemp("real") / "real.duckdb"
    for source, paths in SOURCES.items():
        summary = ingest_paths([str(real_data / p) for p in paths], db=db, source=source, progress=False)
        assert summary["quarantined"] == 0, (source, summary["quarantine"])
    return str(db)


def _totals(snap) -> dict[str, int]:
    return {kind: c["train"] + c["eval"] for kind, c in snap.manifest["counts"].items()}


@pytest.mark.parametrize("name", list(SOURCES))
def test_recipe_counts_match_the_raw_files(name, real_data, real_store, tmp_path):
    recipe, _, _ = compose_recipe([f"data={name}"])
    snap = build_snapshot(recipe, real_store, tmp_path / "snaps")
    expected = EXPECT[name](real_data)
    assert _totals(snap) == expected.counts(sft=recipe.get("sft", {}).get("enabled", True))
    ex = snap.manifest["exclusions"]
    assert ex.get("pref.trivial_edit", 0) == expected.trivial
    assert not any(k.endswith(".decontaminated") for k in ex)     # hash split by prompt: nothing leaks
    for kind in ("sft", "pref", "kto"):                            # files hold what the manifest says
        assert sum(pq.read_metadata(snap.file(kind, s)).num_rows for s in ("train", "eval")) == _totals(snap)[kind]


def test_defacto_pairs_are_the_corrected_summaries(real_data, real_store, tmp_path):
    recipe, _, _ = compose_recipe(["data=defacto", "privacy.redact_pii=false"])
    snap = build_snapshot(recipe, real_store, tmp_path / "snaps")
    got = set()
    for split in ("train", "eval"):
        for r in pq.read_table(snap.file("pref", split)).to_pylist():
            got.add((r["chosen"][0]["content"], r["rejected"][0]["content"]))
            assert r["prompt"][-1]["content"].startswith("Summarize the following article")
    assert got == {(corr, cand) for _, corr, cand in expect_defacto(real_data).pref}
    kto = snap.manifest["kto_classes"]["train"]
    w = snap.manifest["kto_weights"]
    assert 1 <= w["desirable_weight"] * kto["desirable"] / (w["undesirable_weight"] * kto["undesirable"]) <= 4 / 3
