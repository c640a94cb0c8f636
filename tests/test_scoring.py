"""lmkit.scoring: token_nll and nll_per_word against cross-entropy computed directly, in one pass,
and the context window a model is scored (and written) in."""

import pytest
import torch

from conftest import tiny_gpt2
from lmkit.folders import load_model
from lmkit.scoring import context_window, nll_per_word, token_nll

VOCAB = 50


def scoring_gpt2(n_layer, n_positions=64, seed=0):
    return tiny_gpt2(VOCAB, n_positions=n_positions, n_embd=16, n_layer=n_layer, seed=seed).eval()


def direct_nll(model, ids):
    """NLL of ids[1:] from one forward pass over all of ids, written out by hand."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    log_probs = logits.log_softmax(dim=-1)
    return torch.stack([-log_probs[i, ids[i + 1]] for i in range(len(ids) - 1)])


def random_ids(count, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (count,), generator=generator).tolist()


def test_short_text_is_one_direct_pass():
    model = scoring_gpt2(n_layer=1)
    ids = random_ids(12)
    losses = token_nll(model, ids)
    assert losses.shape == (11,)
    assert torch.allclose(losses, direct_nll(model, ids), atol=1e-5)


def test_sliding_windows_score_every_token_once_and_in_place():
    # No blocks and no position embedding: each prediction depends on the current token alone, so
    # whatever the windows, every token's NLL must equal the single-pass one at the same place.
    model = scoring_gpt2(n_layer=0)
    with torch.no_grad():
        model.transformer.wpe.weight.zero_()
    ids = random_ids(45)
    losses = token_nll(model, ids, context_length=8)
    assert losses.shape == (44,)
    assert torch.allclose(losses, direct_nll(model, ids), atol=1e-5)


@pytest.mark.parametrize("length, context", [(40, 16), (17, 16), (16, 16), (30, 5)])
def test_each_window_token_sees_at_least_half_a_context(length, context):
    """With attention, token i's NLL is that of one pass over a window ending at i that holds at least
    half a context before it (or all the text there is)."""
    model = scoring_gpt2(n_layer=1)
    ids = random_ids(length, seed=length)
    losses = token_nll(model, ids, context_length=context)
    assert losses.shape == (length - 1,)
    # one pass from each start predicts every later token from that start on (causal attention)
    from_start = [direct_nll(model, ids[start:]) for start in range(length - 1)]
    for i in range(1, length):
        earliest, latest = max(0, i + 1 - context), max(0, i - context // 2)
        candidates = [from_start[start][i - start - 1] for start in range(earliest, latest + 1)]
        assert any(torch.isclose(losses[i - 1], c, atol=1e-5) for c in candidates), f"token {i}"
    if length <= context:
        assert torch.allclose(losses, direct_nll(model, ids), atol=1e-5)


def test_nll_per_word_is_the_mean_over_words_after_the_prompt(model_dir):
    model, tokenizer = load_model(model_dir, device="cpu")
    prompt = tokenizer.convert_tokens_to_ids(["▁tom", ",", "▁a"])
    ids = tokenizer.convert_tokens_to_ids(["▁ball", ",", "▁said", "▁lily", "."])
    everything = [tokenizer.eos_token_id, *prompt, *ids]
    expected = float(direct_nll(model, everything)[-len(ids):].sum()) / 3  # ball, said, lily
    assert nll_per_word(model, tokenizer, ids, prompt) == pytest.approx(expected, rel=1e-5)
    assert nll_per_word(model, tokenizer, []) == 0.0


def test_context_window_is_at_most_what_the_model_was_trained_on():
    model = scoring_gpt2(n_layer=0, n_positions=32)
    assert [context_window(model, w) for w in (0, 20, 1000)] == [32, 20, 32]


# ---- pinned by mutation testing (issue 23)


def test_one_token_has_no_loss_and_the_model_context_is_the_default():
    model = scoring_gpt2(n_layer=1, n_positions=8)
    assert token_nll(model, [5]).shape == (0,)
    ids = random_ids(30, seed=4)
    assert torch.equal(token_nll(model, ids), token_nll(model, ids, context_length=8))
    assert not torch.allclose(token_nll(model, ids, context_length=4), token_nll(model, ids, context_length=8))


def test_nll_per_word_slides_in_the_window_it_is_given():
    from types import SimpleNamespace
    model = scoring_gpt2(n_layer=1, n_positions=32)
    ids = random_ids(40, seed=6)
    words = SimpleNamespace(eos_token_id=0, all_special_ids=[], convert_ids_to_tokens=lambda ids: ["w"] * len(ids))
    whole = float(token_nll(model, [0, *ids], 32)[-40:].sum()) / 40
    narrow = float(token_nll(model, [0, *ids], 10)[-40:].sum()) / 40
    assert nll_per_word(model, words, ids) == pytest.approx(whole, rel=1e-5)
    assert nll_per_word(model, words, ids, window=10) == pytest.approx(narrow, rel=1e-5)
    assert narrow != pytest.approx(whole, rel=1e-3)
    marks = SimpleNamespace(eos_token_id=0, all_special_ids=[], convert_ids_to_tokens=lambda ids: ["."] * len(ids))
    assert nll_per_word(model, marks, ids) == pytest.approx(whole * 40, rel=1e-5)  # no word: divided by 1


def test_context_window_by_default_is_the_whole_trained_context():
    assert context_window(scoring_gpt2(n_layer=0, n_positions=24)) == 24


@pytest.mark.parametrize("context", [2, 3])
def test_a_context_of_two_or_three_predicts_each_token_from_the_tokens_just_before_it(context):
    """The smallest contexts: every token is predicted from the context - 1 tokens before it (all there are,
    at the start), as one pass over just those tokens gives it."""
    model = scoring_gpt2(n_layer=1)
    ids = random_ids(9, seed=context)
    losses = token_nll(model, ids, context_length=context)
    expected = torch.stack([direct_nll(model, ids[max(0, i + 1 - context):i + 1])[-1] for i in range(1, len(ids))])
    assert losses.shape == (8,)
    assert torch.allclose(losses, expected, atol=1e-5)
