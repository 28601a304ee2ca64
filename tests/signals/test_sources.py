"""Source mappings (conf/source/*.yaml) against the real upstream files: expected counts are
computed from the raw files here, independently of the mapping, and compared with stats --json."""

from __future__ import annotations

import gzip
import json
import tarfile

import pytest

from signals.sources import available, load_mapping
from tests.signals.conftest import write_jsonl


def test_every_shipped_mapping_loads():
    names = set(available())
    assert {"hh-rlhf", "defacto", "mlqe-pe", "mlqe-da", "finegrained-qa", "openai"} <= names
    for name in names:
        assert load_mapping(name)["name"] == name


def test_unknown_source_is_a_clear_error(cli, tmp_path):
    write_jsonl(tmp_path / "x.jsonl", [{"a": 1}])
    code, _ = cli("ingest", tmp_path / "x.jsonl", "--source", "nope")
    assert code == 2


def test_hh_rlhf(real_data, cli, stats):
    path = real_data / "hh-rlhf" / "harmless-base-test.first500.jsonl.gz"
    n = sum(1 for line in gzip.open(path, "rt") if line.strip())
    assert cli("ingest", path, "--source", "hh-rlhf")[0] == 0
    s = stats()
    assert s["interactions"] == 2 * n
    assert s["feedback"] == {"accept": 0, "edit": 0, "reject": 0, "rate": 0, "choose": n}
    assert s["quarantined"] == 0 and s["pending"] == 0


def test_hh_rlhf_format_edge_cases(tmp_path, cli, stats):
    ok = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: a pun",
          "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: no"}
    diverging = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}
    write_jsonl(tmp_path / "hh.jsonl", [ok, diverging, {"chosen": "no turns"}])
    code, _ = cli("ingest", tmp_path / "hh.jsonl", "--source", "hh-rlhf")
    s = stats()
    assert (s["interactions"], s["feedback"]["choose"], s["quarantine"]) == (2, 1, {"mapping_error": 2})
    import duckdb

    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    prompt = json.loads(con.execute("SELECT any_value(prompt) FROM interactions").fetchone()[0])
    assert [m["role"] for m in prompt] == ["user", "assistant", "user"]
    assert sorted(r[0] for r in con.execute("SELECT completion FROM interactions").fetchall()) == ["a pun", "no"]


def test_defacto(real_data, cli, stats):
    rows = [json.loads(line) for split in ("train", "val") for line in open(real_data / "defacto" / f"{split}.jsonl")]
    assert cli("ingest", real_data / "defacto", "--source", "defacto")[0] == 0
    s = stats()
    assert s["interactions"] == len(rows)
    assert s["feedback"]["accept"] == sum(not r["has_error"] for r in rows)
    assert s["feedback"]["reject"] == sum(bool(r["has_error"]) for r in rows)
    assert s["feedback"]["edit"] == sum(bool((r["feedback"]["summary"] or "").strip()) for r in rows)
    assert s["quarantined"] == 0


def _tar_lines(path, suffix):
    with tarfile.open(path) as t:
        return {m.name.rsplit("/", 1)[0]: t.extractfile(m).read().decode().splitlines()
                for m in t.getmembers() if m.name.endswith(suffix)}


def test_mlqe_pe_post_editing(real_data, cli, stats):
    accept = edit = 0
    tarballs = sorted((real_data / "mlqe-pe" / "post-editing").rglob("*.tar.gz"))
    for tb in tarballs:
        mt, pe = _tar_lines(tb, ".mt"), _tar_lines(tb, ".pe")
        for d in mt:
            for a, b in zip(mt[d], pe[d], strict=True):
                accept += a.strip() == b.strip()
                edit += a.strip() != b.strip()
    assert cli("ingest", real_data / "mlqe-pe" / "post-editing", "--source", "mlqe-pe")[0] == 0
    s = stats()
    assert s["interactions"] == accept + edit == 9000
    assert (s["feedback"]["accept"], s["feedback"]["edit"]) == (accept, edit)
    assert s["quarantined"] == 0


def test_mlqe_direct_assessments(real_data, cli, stats, db):
    means = []
    for tb in sorted((real_data / "mlqe-pe" / "direct-assessments").rglob("*.tar.gz")):
        for lines in _tar_lines(tb, ".df.short.tsv").values():
            header = lines[0].split("\t")
            means += [float(line.split("\t")[header.index("mean")]) for line in lines[1:]]
    assert cli("ingest", real_data / "mlqe-pe" / "direct-assessments", "--source", "mlqe-da")[0] == 0
    s = stats()
    assert s["interactions"] == s["feedback"]["rate"] == len(means)
    import duckdb

    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT avg(score) FROM feedback").fetchone()[0] == pytest.approx(sum(means) / len(means))


def test_finegrained_qa(real_data, cli, stats):
    path = real_data / "finegrained-rlhf-qa-feedback" / "dev_feedback.first100.json"
    qs = json.load(open(path))
    assert cli("ingest", path, "--source", "finegrained-qa")[0] == 0
    s = stats()
    assert s["interactions"] == 4 * len(qs)
    assert s["feedback"]["choose"] == sum(p != 0 for q in qs for p in q["preference"]) == 556
    assert s["feedback"]["edit"] == sum(bool(q["feedback"]["corrected-prediction"].strip()) for q in qs) == 96
    assert s["quarantined"] == 0 and s["pending"] == 0
