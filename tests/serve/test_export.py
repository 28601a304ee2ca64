"""`python -m serve export`: merged model + torchao weight-only variants, each gated by the eval harness.

Reuses the eval fixtures (a contract-1 snapshot and a tiny run trained on it)."""

from __future__ import annotations

import json

import pytest

from tests.eval.conftest import (  # noqa: F401  (pytest fixtures, reused rather than duplicated)
    _one_thread,
    good_run,
    runs_root,
    snapshot,
    train_run,
)

FAST = ["eval.bootstrap.resamples=200"]


def _export(run, tmp_path, **kw):
    from serve.export import export

    kw.setdefault("sets", FAST)
    kw.setdefault("bench_tokens", 4)
    return export(str(run), out=str(tmp_path / "export"), store=str(tmp_path / "signal.duckdb"), **kw)


def _rows(tmp_path) -> dict:
    from serve.variants import list_variants
    from signals.store import store

    with store(tmp_path / "signal.duckdb", read_only=True) as con:
        return {r["variant"]: r for r in list_variants(con)}


def test_export_writes_merged_and_gated_variants(good_run, tmp_path):  # noqa: F811
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval.runs import load_run_model, read_run
    from serve.variants import folder_bytes

    out, rows = _export(good_run, tmp_path, variants=["int8", "int4"])

    merged = out / "merged"
    names = {p.name for p in merged.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(merged))
    assert tok.chat_template and tok.pad_token_id != tok.eos_token_id
    plain = AutoModelForCausalLM.from_pretrained(str(merged))
    ref = AutoModelForCausalLM.from_pretrained(str(good_run / "model"))
    assert torch.equal(plain.model.layers[0].mlp.down_proj.weight, ref.model.layers[0].mlp.down_proj.weight)

    recorded = _rows(tmp_path)
    assert set(recorded) == {"merged", "int8", "int4"}
    assert recorded["merged"]["decision"] == "reference"
    for name in ("int8", "int4"):
        vdir = out / name
        run = read_run(vdir)                                  # the harness's reader accepts it
        assert run.run_id == f"{good_run.name}-{name}" and run.snapshot_version == "v-test"
        model, tok = load_run_model(run)                      # ... and its loader loads it
        assert getattr(model.config, "quantization_config", None) is not None
        enc = tok(["hello"], return_tensors="pt")
        assert model.generate(**enc, max_new_tokens=3, min_new_tokens=3, do_sample=False).shape[1] == \
            enc["input_ids"].shape[1] + 3
        row = recorded[name]
        assert row["bytes"] == folder_bytes(vdir / "model")[0] and row["weight_bytes"] > 0
        assert row["tokens_per_s"] > 0 and row["latency_p50_ms"] > 0
        assert row["quantization"]["quant_method"] == "torchao"
        assert row["decision"] in ("promote", "reject", "inconclusive") and row["eval_id"]
    assert recorded["int8"]["weight_bytes"] < recorded["merged"]["weight_bytes"]
    assert recorded["int8"]["decision"] == "promote", recorded["int8"]["reasons"]

    from signals.store import store

    with store(tmp_path / "signal.duckdb", read_only=True) as con:
        dec = con.execute("SELECT run_id, decision, baseline FROM decisions WHERE eval_id = ?",
                          [recorded["int8"]["eval_id"]]).fetchone()
        alias = con.execute("SELECT count(*) FROM aliases").fetchone()[0]
    assert dec[0] == f"{good_run.name}-int8" and dec[1] == "promote" and dec[2] == str(merged.resolve())
    assert alias == 0                                       # export never moves production
    summary = json.loads((out / "export.json").read_text())
    assert [v["variant"] for v in summary["variants"]] == ["merged", "int4", "int8"]


def test_variant_failing_the_gate_is_rejected(good_run, tmp_path):  # noqa: F811
    # margin -1: the variant would have to beat merged by 1 nat per token, which it cannot
    _, rows = _export(good_run, tmp_path, variants=["int8"], margin=-1.0)
    row = _rows(tmp_path)["int8"]
    assert row["decision"] == "reject", row["reasons"]
    assert any("sft_loglik" in r for r in row["reasons"])

    from serve.variants import servable
    from signals.store import store

    with store(tmp_path / "signal.duckdb", read_only=True) as con:
        assert [v["variant"] for v in servable(con, good_run.name)] == ["merged"]


def test_cli_no_eval_prints_the_table(good_run, tmp_path, capsys):  # noqa: F811
    from serve.__main__ import SUMMARY, VERBS
    from signals.cli import main

    rc = main("python -m serve", SUMMARY, VERBS, ["export", str(good_run), "--variants", "int8", "--no-eval",
                                                  "--out", str(tmp_path / "export"), "--bench-tokens", "2",
                                                  "--store", str(tmp_path / "signal.duckdb")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "merged" in out and "int8" in out and "unevaluated" in out and "tokens/s" in out
    row = _rows(tmp_path)["int8"]
    assert row["decision"] == "unevaluated" and row["eval_id"] is None


def test_lora_run_is_merged(tiny_model_dir, snapshot, tmp_path):  # noqa: F811
    from transformers import AutoModelForCausalLM

    run = train_run(tiny_model_dir, tmp_path / "runs" / "lora" / "r1", snapshot, adapter=True, steps=2)
    out, _ = _export(run, tmp_path, variants=[], gate=False)
    merged = out / "merged"
    assert not (merged / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(str(merged))
    assert not hasattr(model, "peft_config")


def test_bad_input(good_run, tmp_path):  # noqa: F811
    from serve import ServeError
    from serve.export import parse_guards, parse_variants

    with pytest.raises(ServeError, match="unknown fp8"):
        parse_variants("int8,fp8")
    with pytest.raises(ServeError, match="METRIC=ALLOWED_DROP"):
        parse_guards(["kto_auc"])
    with pytest.raises(ServeError, match="neither a run directory"):
        _export(tmp_path / "nope", tmp_path, variants=[])


def test_a_variant_torchao_cannot_write_is_recorded_skipped(good_run, tmp_path, monkeypatch):  # noqa: F811
    import serve.export as ex

    def no_kernel(name):
        raise NotImplementedError("Int4PlainInt32Tensor does not support device 'cpu' yet.")

    monkeypatch.setattr(ex, "quant_config", no_kernel)
    out, rows = _export(good_run, tmp_path, variants=["int4"])
    row = _rows(tmp_path)["int4"]
    assert row["decision"] == "skipped" and row["path"] is None and row["bytes"] is None
    assert "does not support device 'cpu'" in row["reasons"][0]
    assert not (out / "int4").exists() and not list(out.glob(".int4.tmp*"))
    assert "skipped" in ex.format_table(rows[0].run_id, out, rows)
