"""Proof that snapshots are what TRL expects: each kind, read as a `datasets.Dataset` the
way train/ reads it (signals.snapshot), trains one optimizer step of the matching TRL
trainer on the tiny local model; the chat template is applied once and the final EOS is a
trained label."""

from __future__ import annotations

import pytest

from signals.build import build_snapshot
from signals.snapshot import COLUMNS
from tests.signals.store_helpers import TinyStore

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trl")
    s = TinyStore(tmp / "s.duckdb")
    for i in range(12):
        chat = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": f"Question {i}?"}]
        s.shown(chat, f"Answer {i}.", "accept", user=f"u{i % 3}")
        s.shown(f"Fix this {i}", f"draft {i}", "edit", edited_text=f"A careful, corrected text {i}.", user=f"u{i % 3}")
        s.shown(f"Bad one {i}", f"nonsense {i}", "reject", user=f"u{i % 3}")
    s.close()
    return build_snapshot({"name": "trl", "split": {"eval_fraction": 0.2}}, s.path, tmp / "snaps")


def _load(snapshot, kind):
    train = snapshot.dataset(kind, "train", columns=COLUMNS[kind])
    assert train.num_rows == snapshot.manifest["counts"][kind]["train"] > 0
    assert train.column_names == list(COLUMNS[kind])
    return {"train": train}


def test_snapshot_dataset_is_what_load_dataset_reads(snapshot, tmp_path):
    from datasets import load_dataset

    # train only: `load_dataset` refuses a Parquet file with 0 rows ("corresponds to no data");
    # Snapshot.dataset gives None for it instead
    for kind in ("sft", "pref", "kto"):
        loaded = load_dataset("parquet", data_files={"train": snapshot.data_files(kind)["train"]},
                              cache_dir=str(tmp_path / "cache"))["train"]
        assert snapshot.dataset(kind, "train").to_list() == loaded.to_list()


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _moved(before, model):
    after = dict(model.named_parameters())
    return [n for n, p in before.items() if not (after[n].detach() == p).all()]


def _common(tmp_path):
    return dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4,
                learning_rate=1e-2, use_cpu=True, bf16=False, report_to=[], save_strategy="no",
                logging_strategy="no", activation_checkpointing=False, dataloader_num_workers=0, seed=0)


def test_sft_one_step_on_messages(snapshot, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    ds = _load(snapshot, "sft")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = _params(model)
    trainer = SFTTrainer(model=model, processing_class=tok, train_dataset=ds["train"].select_columns(["messages"]),
                         args=SFTConfig(max_length=128, **_common(tmp_path)))
    trainer.train()
    assert _moved(before, model)


def test_sft_template_applied_once_and_final_eos_is_trained(snapshot, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    ds = _load(snapshot, "sft")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = SFTTrainer(model=model, processing_class=tok, train_dataset=ds["train"].select_columns(["messages"]),
                         args=SFTConfig(max_length=256, assistant_only_loss=True, **_common(tmp_path)))
    example = trainer.train_dataset[0]
    ids, labels = example["input_ids"], example["labels"]
    messages = ds["train"][0]["messages"]
    expected = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert ids == list(expected)                                    # the template, once
    start, eos = tok.convert_tokens_to_ids("<|im_start|>"), tok.eos_token_id
    assert ids.count(start) == len(messages)                        # one header per message
    assert ids.count(eos) == len(messages)                          # one EOS per turn: none doubled
    if tok.bos_token_id is not None:
        assert ids.count(tok.bos_token_id) <= 1
    last_eos = max(i for i, t in enumerate(ids) if t == eos)
    assert labels[last_eos] == eos                                  # the final EOS is a label
    answer = tok(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    assert [t for t in labels if t != -100] == answer + [eos]       # only the answer and its EOS train
    batch = trainer.data_collator([example])
    assert batch["labels"][0].tolist()[last_eos] == eos


def test_dpo_one_step_on_pairs(snapshot, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    ds = _load(snapshot, "pref")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = _params(model)
    train = ds["train"].select_columns(["prompt", "chosen", "rejected"])
    trainer = DPOTrainer(model=model, processing_class=tok, train_dataset=train,
                         args=DPOConfig(max_length=128, **_common(tmp_path)))
    row = trainer.train_dataset[0]
    chosen = row.get("chosen_input_ids") or row.get("chosen_ids")
    assert chosen is not None, sorted(row)
    # the answer turn carries one EOS (the template's <|im_end|>, then its newline): none doubled
    assert chosen.count(tok.eos_token_id) == 1 and tok.eos_token_id in chosen[-2:]
    trainer.train()
    assert _moved(before, model)


def test_kto_one_step_with_manifest_weights(snapshot, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    ds = _load(snapshot, "kto")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = _params(model)
    train = ds["train"].select_columns(["prompt", "completion", "label"])
    assert set(train["label"]) == {True, False}
    weights = snapshot.manifest["kto_weights"]
    trainer = KTOTrainer(model=model, processing_class=tok, train_dataset=train,
                         args=KTOConfig(max_length=128, **weights, **_common(tmp_path)))
    trainer.train()
    assert _moved(before, model)
