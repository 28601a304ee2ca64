"""Export -> import gives the same examples, for each format: a snapshot is exported
(`python -m signals export`), read back with the matching source mapping into a new store, and
the new store's snapshot of that kind holds the same examples (TRL columns, train and eval
together: the split depends on users and times, which these formats do not carry)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from signals.build import build_snapshot
from signals.snapshot import COLUMNS, SPLITS
from tests.signals.store_helpers import TinyStore

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
RECIPE = {"name": "rt", "split": {"eval_fraction": 0.25}}


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rt")
    s = TinyStore(tmp / "s.duckdb")
    for i in range(8):
        chat = [{"role": "system", "content": "Réponds en une phrase."}, {"role": "user", "content": f"Question {i} — où ?"}]
        s.shown(chat, f"Réponse {i} 🙂", "accept", user=f"u{i % 3}")
        s.shown(f"Corrige {i}", f"brouillon {i}", "edit", edited_text=f"Un texte corrigé et soigné {i}.", user=f"u{i % 3}")
        s.shown(f"Mauvais {i}", f"n'importe quoi {i}", "reject", user=f"u{i % 3}")
    s.close()
    return build_snapshot(RECIPE, s.path, tmp / "snaps")


def examples(snapshot, kind) -> Counter:
    rows = [r for split in SPLITS for r in snapshot.table(kind, split, COLUMNS[kind]).to_pylist()]
    return Counter(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows)


def _reimport(cli_main, tmp_path, paths, source) -> Counter:
    db = tmp_path / "back.duckdb"
    assert cli_main(["ingest", *map(str, paths), "--source", source, "--store", str(db)]) == 0
    return build_snapshot(RECIPE, str(db), tmp_path / "snaps2")


@pytest.mark.parametrize(("to", "kind", "source"), [("openai-sft", "sft", "openai-sft"), ("openai-pref", "pref", "openai-pref")])
def test_openai_round_trip(snap, tmp_path, to, kind, source):
    from signals.__main__ import main

    out = tmp_path / "out"
    assert main(["export", str(snap.path), "--to", to, "--out", str(out)]) == 0
    files = sorted((out / kind).glob("*.jsonl"))
    assert [f.name for f in files] == ["eval.jsonl", "train.jsonl"]
    first = json.loads(files[1].read_text().splitlines()[0])
    assert set(first) == ({"messages"} if kind == "sft" else {"input", "preferred_output", "non_preferred_output"})
    back = _reimport(main, tmp_path, files, source)
    assert examples(back, kind) == examples(snap, kind) and sum(examples(snap, kind).values()) > 0


@pytest.mark.parametrize(("kind", "source"), [("sft", "trl-sft"), ("pref", "trl-pref"), ("kto", "trl-kto")])
def test_hf_save_to_disk_round_trip(snap, tmp_path, kind, source):
    from datasets import load_from_disk

    from signals.__main__ import main

    out = tmp_path / "hf"
    assert main(["export", str(snap.path), "--to", "hf", "--out", str(out)]) == 0
    dd = load_from_disk(str(out / kind))
    assert set(dd) == set(SPLITS) and dd["train"].column_names == list(COLUMNS[kind])
    back = _reimport(main, tmp_path, [out / kind], source)     # the folder: its data-*.arrow files only
    assert examples(back, kind) == examples(snap, kind)


def test_export_refuses_a_used_folder_and_push_without_token(snap, tmp_path, monkeypatch, capsys):
    from signals.__main__ import main

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep")
    assert main(["export", str(snap.path), "--to", "hf", "--out", str(tmp_path / "used")]) == 2
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))       # no stored token either
    assert main(["export", str(snap.path), "--to", "hf", "--out", str(tmp_path / "o"), "--push", "me/ds"]) == 2
    assert "token" in capsys.readouterr().err
