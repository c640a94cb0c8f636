"""Scoring a text under a model alone: the negative log-likelihood of each token, and per word.

Used to report how likely the model finds a Pilish text (pilish_generate.py) and by the benchmarks.
"""


def context_window(model, window=0):
    """Tokens of context the model sees: `window`, at most what it was trained on (0 = all of that)."""
    return min(window or model.config.n_positions, model.config.n_positions)


def token_nll(model, ids, context_length=None):
    """Negative log-likelihood (nats) of each token of `ids` after the first, under `model` alone.

    Texts longer than the model's context are scored in overlapping windows, so every token is
    predicted from at least half a context of what precedes it.
    """
    import torch
    context_length = context_length or model.config.n_positions
    ids = torch.as_tensor(ids, dtype=torch.long, device=model.device)
    losses = torch.empty(len(ids) - 1, device=model.device)
    stride = max(1, context_length // 2)
    scored = 1  # tokens [0, scored) have their loss (the first token has none)
    with torch.no_grad():
        while scored < len(ids):
            # at least half a context before the first new token; a full window where the text allows
            start = max(0, min(scored - (context_length - stride), len(ids) - context_length))
            end = min(len(ids), start + context_length)
            logits = model(ids[start:end].unsqueeze(0)).logits[0].float()
            nll = torch.nn.functional.cross_entropy(logits[:-1], ids[start + 1:end], reduction="none")
            losses[scored - 1:end - 1] = nll[scored - 1 - start:]
            scored = end
    return losses.cpu()


def nll_per_word(model, tokenizer, ids, prompt_ids=(), window=0):
    """Mean negative log-likelihood (nats) of the tokens `ids` per word among them (tokens with a
    letter), under the model alone, after <|endoftext|> and `prompt_ids`; long texts in sliding windows."""
    ids = list(ids)
    if not ids:
        return 0.0
    losses = token_nll(model, [tokenizer.eos_token_id, *prompt_ids, *ids], context_window(model, window))[-len(ids):]
    special = set(tokenizer.all_special_ids)
    words = sum(1 for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(ids))
                if token_id not in special and any(char.isalpha() for char in token))
    return float(losses.sum()) / max(1, words)
