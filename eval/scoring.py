"""Log-probabilities of completions under a causal LM, and batched generation.

The scorer is what every likelihood metric stands on, so it is batched and
padding-aware: examples are tokenized as prompt + completion exactly as TRL does
(chat template on the prompt with a generation prompt, the completion is the rest
of the templated conversation), sorted by length, right-padded, and only the
completion tokens are summed. `score_loop` is the naive one-at-a-time reference
the batched scorer must match (bench/bench_eval.py, tests/eval/test_scoring.py).

    logp, ntok = score_completions(model, tok, prompts, completions, batch_size=16)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval import EvalError
from train.console import quiet


def encode(tokenizer, prompts: Sequence[list[dict]], completions: Sequence[list[dict]],
           max_length: int | None = None) -> list[tuple[list[int], list[int]]]:
    """(prompt_ids, completion_ids) per example, truncated to `max_length` tokens.

    Truncation keeps the completion (the scored part) and drops the oldest prompt
    tokens; at least one prompt token stays so the first completion token is predicted.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    prompt_texts, completion_texts = [], []
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        pt = tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        ft = tokenizer.apply_chat_template(list(p) + list(c), tokenize=False)
        if not ft.startswith(pt):
            raise EvalError(f"example {i}: the chat template does not render the prompt as a prefix "
                            "of prompt + completion; cannot isolate completion tokens")
        prompt_texts.append(pt)
        completion_texts.append(ft[len(pt):])
    p_ids = tokenizer(prompt_texts, add_special_tokens=False)["input_ids"] if prompt_texts else []
    c_ids = tokenizer(completion_texts, add_special_tokens=False)["input_ids"] if prompt_texts else []
    out = []
    for i, (p, c) in enumerate(zip(p_ids, c_ids, strict=True)):
        if not c:
            raise EvalError(f"example {i}: the completion is empty after tokenization")
        if not p:
            raise EvalError(f"example {i}: the prompt is empty after tokenization")
        if max_length and len(p) + len(c) > max_length:
            c = c[: max_length - 1]
            p = p[-(max_length - len(c)):]
        out.append((list(p), list(c)))
    return out


def completion_logps(model, input_ids, attention_mask, completion_mask):
    """Sum of log p(token) over completion positions, and their count, per row.

    Differentiable (tests train with it); callers wrap it in inference_mode to score.
    Rows are right-padded and every completion starts at index >= 1. Only completion
    positions go through log-softmax, which keeps memory at (completion tokens x vocab)
    instead of (batch x length x vocab).
    """
    import torch

    # Logits only from the first position that predicts a completion token onwards: the
    # vocabulary projection of prompt positions is the largest waste in scoring.
    first = int(completion_mask.float().argmax(-1).min()) - 1
    keep = input_ids.shape[1] - first
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits
    except TypeError:                   # a (remote-code) model without logits_to_keep
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, first:]
    logits = logits[:, :-1]
    targets = input_ids[:, first + 1:]
    sel = completion_mask[:, first + 1:].bool()
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(sel)[sel]
    picked = logits[sel].float()
    # log_softmax, not x - logsumexp(x): over a 49k vocabulary the latter drifts ~1e-5 a token.
    lp = picked.log_softmax(-1).gather(-1, targets[sel][:, None]).squeeze(-1)
    # Sum in float64: a float32 sum of a few hundred log-probs is off by ~1e-4 on its own.
    sums = torch.zeros(input_ids.shape[0], device=lp.device, dtype=torch.float64).index_add_(0, rows, lp.double())
    return sums, sel.sum(-1)


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int, device=None):
    """Right-pad (prompt + completion) rows; masks for attention and completion tokens."""
    import torch

    width = max(len(p) + len(c) for p, c in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(encoded), width), dtype=torch.long)
    comp = torch.zeros((len(encoded), width), dtype=torch.long)
    for r, (p, c) in enumerate(encoded):
        n = len(p) + len(c)
        ids[r, :n] = torch.tensor(p + c)
        attn[r, :n] = 1
        comp[r, len(p):n] = 1
    if device is not None:
        ids, attn, comp = ids.to(device), attn.to(device), comp.to(device)
    return ids, attn, comp


def _device(model):
    return next(model.parameters()).device


def score_encoded(model, encoded, pad_id: int, *, batch_size: int = 16,
                  desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batched scorer over pre-encoded examples: (sum log-prob, completion tokens)."""
    import torch
    from tqdm.auto import tqdm

    n = len(encoded)
    logp, ntok = np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.int64)
    # Longest first: similar lengths share a batch (little padding) and OOM shows at once.
    order = sorted(range(n), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    device = _device(model)
    with torch.inference_mode():
        for idx in tqdm(batches, desc=desc, disable=desc is None or len(batches) < 2 or quiet(), leave=False):
            ids, attn, comp = collate([encoded[i] for i in idx], pad_id, device)
            sums, counts = completion_logps(model, ids, attn, comp)
            logp[idx] = sums.double().cpu().numpy()
            ntok[idx] = counts.cpu().numpy()
    return logp, ntok


def score_completions(model, tokenizer, prompts, completions, *, batch_size: int = 16,
                      max_length: int | None = None, desc: str | None = None):
    """(sum log-prob, completion tokens) for each (prompt, completion), batched."""
    encoded = encode(tokenizer, prompts, completions, max_length)
    return score_encoded(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, desc=desc)


def score_loop(model, encoded) -> tuple[np.ndarray, np.ndarray]:
    """The naive reference: one unpadded forward pass per example."""
    import torch

    logp, ntok = np.zeros(len(encoded)), np.zeros(len(encoded), dtype=np.int64)
    device = _device(model)
    with torch.inference_mode():
        for i, (p, c) in enumerate(encoded):
            ids = torch.tensor([p + c], device=device)
            out = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
            targets = ids[0, 1:]
            lp = out[torch.arange(len(targets), device=device), targets][len(p) - 1:]
            logp[i], ntok[i] = float(lp.double().sum()), len(c)
    return logp, ntok


def generate(model, tokenizer, prompts: Sequence[list[dict]], *, max_new_tokens: int = 64,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             seed: int = 0, batch_size: int = 16, max_length: int | None = None,
             desc: str | None = None) -> list[str]:
    """Answers to chat prompts, batched with left padding.

    Each batch reseeds torch with `seed + batch index`, so two models given the same
    prompts, batch size and decoding see the same random stream (a paired comparison),
    whatever ran before.
    """
    import torch
    from tqdm.auto import tqdm

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts]
    side, trunc = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"   # keep the generation prompt
    out: list[str] = []
    device = _device(model)
    kwargs = {"max_new_tokens": int(max_new_tokens), "do_sample": bool(do_sample),
              "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if do_sample:
        kwargs.update(temperature=float(temperature), top_p=float(top_p))
    batches = [texts[s:s + batch_size] for s in range(0, len(texts), batch_size)]
    try:
        with torch.inference_mode():
            for b, chunk in enumerate(tqdm(batches, desc=desc, disable=desc is None or quiet(), leave=False)):
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False,
                                truncation=bool(max_length), max_length=max_length)
                enc = {k: v.to(device) for k, v in enc.items()}
                torch.manual_seed(int(seed) + b)
                gen = model.generate(**enc, **kwargs)
                new = gen[:, enc["input_ids"].shape[1]:]
                out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, trunc
    return [t.strip() for t in out]
