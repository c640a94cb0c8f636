"""pilish.ngram: the Kneser-Ney trigram model, pinned on a corpus counted by hand."""

import pytest
import torch

from lmkit.folders import load_tokenizer
from pilish.ngram import (FALLBACK_DISCOUNT, NGRAMS_FILE, build_ngram_model, estimate_discounts, load_ngram_model,
                          ngram_model, save_ngram_model)

# Vocabulary 0..4: 0 is the boundary (<|endoftext|>), 1-4 are words. Each story is read as 0 0 story 0.
STORIES = [[1, 2, 3], [1, 2, 4], [1, 2, 3], [4, 2, 3]]
DISCOUNTS = (0.5, 1.0, 1.5)  # D1, D2, D3+ for every order, so the arithmetic below stays short
# Trigram counts: 0 0 1: 3, 0 0 4: 1, 0 1 2: 3, 0 4 2: 1, 1 2 3: 2, 1 2 4: 1, 4 2 3: 1, 2 3 0: 3, 2 4 0: 1.
# Pair continuation counts (how many different tokens precede the pair among those 9 trigrams):
#   0 1: 1, 0 4: 1, 1 2: 1, 4 2: 1, 2 3: 2 (after 1 and after 4), 2 4: 1, 3 0: 1, 4 0: 1 (8 pairs).
# Token continuation counts (how many different tokens precede it among those 8 pairs): 0: 2, 1: 1, 2: 2, 3: 1, 4: 2.
# P1(c) = (N(c) - D(N(c))) / 8 + g1 / 5, g1 = (1 + 0.5 + 1 + 0.5 + 1) / 8 = 0.5, so g1 / 5 = 0.1:
#   P1(0) = P1(2) = P1(4) = (2 - 1) / 8 + 0.1 = 0.225; P1(1) = P1(3) = (1 - 0.5) / 8 + 0.1 = 0.1625
P1 = [0.225, 0.1625, 0.225, 0.1625, 0.225]
# After "2": pairs 2 3 (2) and 2 4 (1), total 3, g2 = (1 + 0.5) / 3 = 0.5:
#   P2(c | 2) = 0.5 P1(c) + [c = 3] (2 - 1) / 3 + [c = 4] (1 - 0.5) / 3
P2_AFTER_2 = [0.1125, 0.08125, 0.1125, 1 / 3 + 0.08125, 1 / 6 + 0.1125]
# After "1 2": trigrams 1 2 3 (2) and 1 2 4 (1), total 3, g3 = 0.5: the same shares 1/3 and 1/6, over 0.5 P2
P3_AFTER_1_2 = [0.05625, 0.040625, 0.05625, 1 / 3 + 0.5 * P2_AFTER_2[3], 1 / 6 + 0.5 * P2_AFTER_2[4]]
# After "0": pairs 0 1 and 0 4 (1 each), total 2, shares 0.5 / 2 = 0.25 each, g = (0.5 + 0.5) / 2 = 0.5;
# after "0 0" (a story's start): 0 0 1 (3, so D3+ = 1.5) and 0 0 4 (1), total 4, g = (1.5 + 0.5) / 4 = 0.5
P2_AFTER_0 = [0.1125, 0.25 + 0.08125, 0.1125, 0.08125, 0.25 + 0.1125]
P3_AFTER_0_0 = [0.05625, (3 - 1.5) / 4 + 0.5 * P2_AFTER_0[1], 0.05625, 0.040625, (1 - 0.5) / 4 + 0.5 * P2_AFTER_0[4]]
# After "1": the pair 1 2 (1), total 1, share (1 - 0.5) / 1 = 0.5 for 2, g = 0.5 / 1 = 0.5
P2_AFTER_1 = [0.1125, 0.08125, 0.5 + 0.1125, 0.08125, 0.1125]


@pytest.fixture
def model():
    return build_ngram_model(STORIES, vocab_size=5, boundary_id=0, discounts=DISCOUNTS)


def test_kneser_ney_probabilities_match_the_hand_counts(model):
    contexts = model.contexts([[1, 2], [3, 2], [], [4, 3, 1, 1]])
    assert contexts.tolist() == [[1, 2], [3, 2], [0, 0], [1, 1]]  # the last two tokens, padded with the boundary
    expected = [P3_AFTER_1_2,
                P2_AFTER_2,  # "3 2" never occurs: the whole distribution backs off to P2( | 2)
                P3_AFTER_0_0,
                P2_AFTER_1]  # "1 1" never occurs either
    probs = model.probs(contexts)
    assert torch.allclose(probs, torch.tensor(expected), atol=1e-6)
    assert P3_AFTER_1_2[3] == pytest.approx(0.540625) and P3_AFTER_0_0[1] == pytest.approx(0.540625)
    for distribution in (P1, P2_AFTER_2, P3_AFTER_1_2, P2_AFTER_0, P3_AFTER_0_0, P2_AFTER_1):
        assert sum(distribution) == pytest.approx(1)


def test_every_distribution_sums_to_one_with_estimated_discounts():
    generator = torch.Generator().manual_seed(0)
    stories = [torch.randint(1, 30, (int(length),), generator=generator).tolist()
               for length in torch.randint(0, 40, (200,), generator=generator)]
    model = build_ngram_model(stories, vocab_size=32, boundary_id=0)
    contexts = torch.cartesian_prod(torch.arange(32), torch.arange(32))  # every context, seen or not
    probs = model.probs(contexts)
    assert (probs > 0).all()
    assert torch.allclose(probs.sum(dim=1), torch.ones(len(contexts)), atol=1e-5)


def test_discounts_are_estimated_from_the_counts_of_counts():
    counts = torch.tensor([1, 1, 1, 1, 2, 2, 3, 4, 7])  # n1 = 4, n2 = 2, n3 = 1, n4 = 1
    # Y = 4 / (4 + 2 * 2) = 0.5; D1 = 1 - 2 * 0.5 * 2 / 4 = 0.5; D2 = 2 - 3 * 0.5 * 1 / 2 = 1.25;
    # D3+ = 3 - 4 * 0.5 * 1 / 1 = 1
    assert estimate_discounts(counts) == pytest.approx((0.5, 1.25, 1.0))
    # a corpus repeated 20 times has no count below 20: nothing to estimate from
    assert estimate_discounts(counts * 20) == (FALLBACK_DISCOUNT,) * 3


def test_saved_model_loads_the_same_and_an_old_file_says_how_to_rebuild(model, tmp_path):
    assert load_ngram_model(tmp_path) is None
    save_ngram_model(tmp_path, model)
    loaded = load_ngram_model(tmp_path)
    contexts = model.contexts([[1, 2], [], [4]])
    assert torch.equal(loaded.probs(contexts), model.probs(contexts))
    assert (loaded.vocab_size, loaded.boundary_id) == (5, 0)
    torch.save({"bigrams": torch.tensor([7]), "trigrams": torch.tensor([7])}, tmp_path / NGRAMS_FILE)
    with pytest.raises(ValueError, match="delete it and run the same train_model.py command again"):
        load_ngram_model(tmp_path)


def test_ngram_model_reads_a_tokenizers_ids_each_story_after_and_before_the_end_token(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    model = ngram_model(tokenizer, ["Mom said, mom said.", "Mom said hi."])
    eot = tokenizer.eos_token_id
    mom, said, comma = tokenizer.convert_tokens_to_ids(["▁mom", "▁said", ","])
    assert (model.vocab_size, model.boundary_id) == (len(tokenizer), eot)
    size = model.vocab_size
    assert len(model.trigrams.contexts) > 0 and ((eot * size + eot) * size + mom) in model.trigrams.keys.tolist()
    probs = model.probs(model.contexts([[mom, said]]))[0]
    # "mom said" is followed by "," once, by "." once and by "hi" once: all three above anything unseen
    assert probs[comma] > probs[mom] and torch.isclose(probs.sum(), torch.tensor(1.0))


def test_no_stories_is_said_in_words():
    with pytest.raises(ValueError, match="^no stories to count n-grams in$"):
        build_ngram_model([], vocab_size=5, boundary_id=0)


def test_a_discount_of_exactly_zero_falls_back_for_all_three():
    counts = torch.tensor([1] * 2 + [2] * 3 + [3] * 8 + [4])  # n1 = 2, n2 = 3, n3 = 8, n4 = 1
    # Y = 2 / (2 + 2 * 3) = 0.25 (exact in binary); D1 = 1 - 2 * 0.25 * 3 / 2 = 0.25;
    # D2 = 2 - 3 * 0.25 * 8 / 3 = 2 - 2.0 = 0.0 exactly: outside (0, 2], so no estimate is kept
    assert estimate_discounts(counts) == (FALLBACK_DISCOUNT,) * 3
    # one count of 3 fewer (n3 = 7): D2 = 2 - 1.75 = 0.25 is inside, and all three are estimated
    fewer_threes = torch.tensor([1] * 2 + [2] * 3 + [3] * 7 + [4])
    assert estimate_discounts(fewer_threes) == pytest.approx((0.25, 0.25, 3 - 4 * 0.25 / 7))


def test_seen_followers_are_the_stories_pairs_read_with_the_same_probabilities(model):
    # the 8 pairs above: 0 1, 0 4, 1 2, 4 2, 2 3, 2 4, 3 0, 4 0 (0 0 pads a story's start, so 0 0 is not one)
    contexts = model.contexts([[1, 2], [3, 2], [], [4, 3, 1, 1], [2, 4]])
    probs, seen = model.probs_and_seen(contexts)
    assert torch.equal(probs, model.probs(contexts))
    followers = {0: {1, 4}, 1: {2}, 2: {3, 4}, 3: {0}, 4: {0, 2}}
    for row, last in enumerate(contexts[:, 1].tolist()):
        assert set(seen[row].nonzero().flatten().tolist()) == followers[last], last
    assert model.probs_and_seen(contexts, seen=False)[1] is None
