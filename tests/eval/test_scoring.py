"""The batched scorer equals the one-at-a-time reference, and tokenization is TRL's."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from eval.runs import load_model, read_run
from eval.scoring import encode, generate, score_encoded, score_loop


@pytest.fixture(scope="module")
def scored(good_run, snapshot):
    run = read_run(good_run)
    model, tok = load_model(str(run.model_path))
    rows = pq.read_table(snapshot / "pref" / "eval.parquet").to_pylist()
    # Different lengths in one batch: pad matters. Long prompts for a few rows.
    prompts = [r["prompt"] if i % 3 else [{"role": "system", "content": "be brief " * (i % 11)}] + r["prompt"]
               for i, r in enumerate(rows)]
    rows, prompts = rows[:24], prompts[:24]
    enc = encode(tok, prompts + prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows])
    return model, tok, enc


def test_batched_scorer_matches_per_example_loop(scored):
    model, tok, enc = scored
    assert len({len(p) + len(c) for p, c in enc}) > 5, "fixture should mix lengths"
    lp_b, nt_b = score_encoded(model, enc, tok.pad_token_id, batch_size=7)
    lp_l, nt_l = score_loop(model, enc)
    assert np.array_equal(nt_b, nt_l)
    np.testing.assert_allclose(lp_b, lp_l, atol=1e-4, rtol=0)
    assert np.all(lp_b < 0)


def test_completion_tokens_are_the_templated_assistant_turn(scored):
    _, tok, _ = scored
    prompt = [{"role": "user", "content": "hello"}]
    [(p, c)] = encode(tok, [prompt], [[{"role": "assistant", "content": "thanks great"}]])
    assert tok.decode(p).endswith("<|im_start|>assistant\n")
    assert tok.decode(c).startswith("thanks great<|im_end|>")
    assert tok.eos_token_id in c                         # the stop token is scored too


def test_truncation_keeps_completion_and_limit(scored):
    _, tok, _ = scored
    prompt = [{"role": "user", "content": "order refund " * 50}]
    comp = [{"role": "assistant", "content": "thanks great help"}]
    [(p_full, c_full)] = encode(tok, [prompt], [comp])
    [(p, c)] = encode(tok, [prompt], [comp], max_length=16)
    assert len(p) + len(c) == 16 and c == c_full and p == p_full[-len(p):]


def test_generation_is_batched_and_seeded(scored):
    model, tok, _ = scored
    prompts = [[{"role": "user", "content": f"customer asks the order {w}?"}] for w in ("refund", "ship", "code")]
    kw = {"max_new_tokens": 6, "do_sample": True, "temperature": 1.0, "seed": 3, "batch_size": 2}
    a = generate(model, tok, prompts, **kw)
    b = generate(model, tok, prompts, **kw)
    assert a == b and len(a) == 3 and all(isinstance(x, str) for x in a)


@pytest.mark.slow
def test_real_vocabulary_batched_matches_loop(smollm2_dir):
    """SmolLM2's 49k vocabulary: where x - logsumexp(x) drifted 2e-4 from the loop."""
    model, tok = load_model(str(smollm2_dir))
    prompts = [[{"role": "user", "content": f"Write a short reply about order {i} and its refund."}]
               for i in range(4)]
    chosen = [[{"role": "assistant", "content": "Hello, your refund was sent today. " * (1 + i % 3)}]
              for i in range(4)]
    rejected = [[{"role": "assistant", "content": "no."}] for _ in range(4)]
    enc = encode(tok, prompts + prompts, chosen + rejected)
    lp_b, _ = score_encoded(model, enc, tok.pad_token_id, batch_size=8)
    lp_l, _ = score_loop(model, enc)
    np.testing.assert_allclose(lp_b[:4] - lp_b[4:], lp_l[:4] - lp_l[4:], atol=1e-4, rtol=0)
