"""pilish.prior: the WritingPrior's whole-text rules and its mix with the n-gram model."""

import pytest
import torch

from pilish.ngram import build_ngram_model
from pilish.prior import WritingPrior, mix

INF = float("-inf")


def test_writing_prior_bans_repeats_of_the_whole_text():
    is_word = torch.tensor([False, True, True, True, True, True])  # id 0 is a mark, 1-5 are words
    processor = WritingPrior(is_word, no_repeat_words=3, no_immediate_repeat=True)
    processor.restart([1, 2, 3, 0], prompt_length=2)  # the text so far: words 1 2 3, then a mark
    rows = torch.tensor([[3, 0, 1, 2],  # new words 1 2: "1 2 3" is in the text, so 3 is banned; 2 twice
                         [3, 0, 4, 0]])  # new word 4, then a mark: 4 again would be "4. 4"
    scores = processor(rows, torch.zeros(2, 6))
    assert scores.tolist() == [[0, 0, INF, INF, 0, 0], [0, 0, 0, 0, INF, 0]]


def test_writing_prior_indexes_only_the_new_words_of_each_window_and_matches_a_fresh_one():
    is_word = torch.tensor([False] + [True] * 7)
    ngrams = build_ngram_model([[1, 2, 6, 0, 3, 4, 7], [5, 2, 3]], vocab_size=8, boundary_id=0)
    text = [1, 2, 0, 3, 4, 1, 2, 5, 3, 4, 6, 0, 1, 2, 7, 3, 4]
    rows = torch.tensor([[3, 4, 1, 2], [4, 0, 3, 4], [0, 7, 0, 7]])
    kept = WritingPrior(is_word, no_repeat_words=3, no_immediate_repeat=True, ngram_model=ngrams, ngram_weight=0.5)
    for end in (2, 5, 9, 12, len(text)):  # the windows of one text: each history extends the last
        kept.restart(text[:end], prompt_length=1)
        fresh = WritingPrior(is_word, no_repeat_words=3, no_immediate_repeat=True, ngram_model=ngrams,
                             ngram_weight=0.5)
        fresh.restart(text[:end], prompt_length=1)
        assert kept.seen == fresh.seen
        assert torch.equal(kept(rows, torch.zeros(3, 8)), fresh(rows, torch.zeros(3, 8)))
    # the whole text: "3 4" was followed by 1 and 6, and "1 2" by 0-skipped 3, 5 and 7
    assert kept.seen[(3, 4)] == {1, 6} and kept.seen[(1, 2)] == {3, 5, 7}
    banned = kept(rows, torch.zeros(3, 8)).isinf().tolist()
    # row 0 ends "1 2": 3, 5 and 7 followed "1 2" in the text, 2 is the last word
    assert banned[0] == [False, False, True, True, False, True, False, True]
    # row 2 ends "7 7" (its own immediate repeat, through marks): 7 is banned
    assert banned[2] == [False] * 7 + [True]
    # a history that does not extend the last one (another text) is indexed from the start
    kept.restart([6, 6, 6], prompt_length=0)
    assert kept.seen == {(6, 6): {6}}


def test_mix_multiplies_the_two_distributions_normalizes_and_keeps_bans():
    scores = torch.tensor([[0.4, 0.1, 0.5]]).log()  # the model's distribution, as log-probabilities
    ngram = torch.tensor([[0.1, 0.4, 0.5]])
    assert torch.allclose(mix(scores, ngram, 0.0), scores)  # weight 0: the model alone
    assert torch.allclose(mix(scores, ngram, 1.0), ngram.log())  # weight 1: the n-gram model alone
    # weight 0.5: sqrt(p q) = [sqrt(0.04), sqrt(0.04), sqrt(0.25)] = [0.2, 0.2, 0.5], over their sum 0.9
    assert torch.allclose(mix(scores, ngram, 0.5), torch.tensor([[2 / 9, 2 / 9, 5 / 9]]).log())
    # logits work as well (softmax first), and a padded model vocabulary's extra column is never
    # chosen: softmax(log [4, 1, 5, 10]) = [0.2, 0.05, 0.25, 0.5], sqrt(p q) = sqrt(0.5) [0.2, 0.2, 0.5, 0]
    logits = torch.tensor([[4.0, 1.0, 5.0, 10.0]]).log()
    assert torch.allclose(mix(logits, ngram, 0.5), torch.tensor([[2 / 9, 2 / 9, 5 / 9, 0]]).log())
    # a banned token stays banned: softmax = [4/9, 0, 5/9], sqrt(p q) = [2, 0, 5] / (3 sqrt(10))
    banned = torch.tensor([[0.4, 0.0, 0.5]]).log()
    assert torch.allclose(mix(banned, ngram, 0.5), torch.tensor([[2 / 7, 0, 5 / 7]]).log())
    assert mix(torch.full((1, 3), INF), ngram, 0.5).tolist() == [[INF] * 3]  # nothing left: no NaN


def test_writing_prior_mixes_in_the_ngram_model_after_the_last_two_tokens_even_across_windows():
    is_word = torch.tensor([False, True, True, True, True])  # 0 is <|endoftext|>, 1-4 are words
    ngrams = build_ngram_model([[1, 2, 3], [4, 2, 3], [3, 1]], vocab_size=5, boundary_id=0)
    processor = WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.25)

    def expected(*contexts):  # the model's scores are all 0 (uniform): the mix is the n-gram model's, sharpened
        return (0.25 * ngrams.probs(torch.tensor(contexts)).log()).log_softmax(dim=-1)

    processor.restart([4, 2, 3], prompt_length=3)  # the window's text ends "2 3"; nothing new yet
    assert torch.allclose(processor(torch.tensor([[4, 2, 3]]), torch.zeros(1, 5)), expected([2, 3]))
    rows = torch.tensor([[4, 2, 3, 1], [4, 2, 3, 4]])  # one new token each: "3 1", "3 4" end them
    assert torch.allclose(processor(rows, torch.zeros(2, 5)), expected([3, 1], [3, 4]))
    processor.restart([0, 4], prompt_length=1)  # another text, <|endoftext|> 4, whose row wrote 2 after it
    assert torch.allclose(processor(torch.tensor([[4, 2]]), torch.zeros(1, 5)), expected([4, 2]))
    processor.restart([4], prompt_length=1)  # a text of one token is padded as a story's start
    assert torch.allclose(processor(torch.tensor([[4]]), torch.zeros(1, 5)), expected([0, 4]))
    assert WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.0).ngram_model is None  # weight 0: no mix


def test_writing_prior_pairs_quotes_across_windows():
    is_word = torch.tensor([False, False, False, True, True])  # 0 opens a quote, 1 closes one, 2 is ","
    processor = WritingPrior(is_word, quotes=([0], [1]))
    processor.restart([3, 2, 0, 4], prompt_length=4)  # `tom, "go` : a quote is open
    rows = torch.tensor([[3, 2, 0, 4, 3],  # a word: still open, so no second opening quote
                         [3, 2, 0, 4, 1]])  # it closed in this window: no closing quote now
    assert processor(rows, torch.zeros(2, 5)).tolist() == [[INF, 0, 0, 0, 0], [0, INF, 0, 0, 0]]
    processor.restart([3, 2, 0, 4, 1, 3], prompt_length=6)  # the next window: the quote closed before it
    assert processor(torch.tensor([[4, 1, 3]]), torch.zeros(1, 5)).tolist() == [[0, INF, 0, 0, 0]]
    processor.restart([3, 2, 0, 4, 1, 3, 2, 0], prompt_length=8)
    assert processor(torch.tensor([[3, 2, 0]]), torch.zeros(1, 5)).tolist() == [[INF, 0, 0, 0, 0]]
    processor.restart([4], prompt_length=1)  # another text: nothing open
    assert processor(torch.tensor([[4]]), torch.zeros(1, 5)).tolist() == [[0, INF, 0, 0, 0]]


def test_writing_prior_without_rules_changes_nothing():
    processor = WritingPrior(torch.tensor([False, True, True]))
    processor.restart([1, 1], prompt_length=0)
    scores = torch.randn(2, 3)
    assert torch.equal(processor(torch.tensor([[1], [2]]), scores.clone()), scores)


# ---- pinned by mutation testing (issue 23)


def banned_after(prior, history, new=()):
    """The ids `prior` bans for one row whose text is `history` (before the window) then `new`."""
    prior.restart(list(history), len(history))
    scores = prior(torch.tensor([list(history) + list(new)]), torch.zeros(1, prior.vocab_size))
    return set(torch.isinf(scores[0]).nonzero().flatten().tolist())


def test_a_short_history_alone_still_bans_its_last_word():
    """No new token yet in this window: the last word of the text before it is what may not come again."""
    prior = WritingPrior(torch.tensor([False, True, True, True, True]), no_immediate_repeat=True)
    assert banned_after(prior, [1, 2]) == {2}
    assert banned_after(WritingPrior(torch.tensor([False, True, True]), no_immediate_repeat=True), [2]) == {2}


def test_quote_pairing_works_with_only_opening_or_only_closing_quotes():
    words = torch.tensor([True, True, True, False, False])
    opening_only = WritingPrior(words, quotes=([3], []))
    assert banned_after(opening_only, [0, 1]) == set() and banned_after(opening_only, [0, 3, 1]) == {3}
    closing_only = WritingPrior(words, quotes=([], [4]))
    assert banned_after(closing_only, [0, 1]) == {4}


def test_mix_returns_the_dtype_of_the_scores():
    """A half-precision model's scores come back in half precision (computed in float32 between)."""
    ngram = torch.tensor([[0.1, 0.4, 0.5]])
    for dtype in (torch.float16, torch.bfloat16):
        scores = torch.tensor([[0.4, 0.1, 0.5]]).log().to(dtype)
        mixed = mix(scores, ngram, 0.5)
        assert mixed.dtype == dtype
        assert torch.allclose(mixed.float(), torch.tensor([[2 / 9, 2 / 9, 5 / 9]]).log(), atol=1e-2)


def test_a_word_trigram_the_row_wrote_in_this_window_is_banned():
    """"1 2 3 4 1 2", all written after the restart (none of it in the indexed text): 3 may not follow."""
    prior = WritingPrior(torch.tensor([False, True, True, True, True, True]), no_repeat_words=3)
    assert banned_after(prior, [0], [1, 2, 3, 4, 1, 2]) == {3}
    assert banned_after(prior, [0], [1, 2, 0, 3, 4, 1, 0, 2]) == {3}  # marks between the words are skipped
    assert banned_after(prior, [0], [1, 2, 3, 4, 2, 1]) == set()  # "2 1" never came before


def test_no_repeat_words_of_two_bans_a_repeated_word_pair():
    prior = WritingPrior(torch.tensor([False, True, True, True, True, True]), no_repeat_words=2)
    assert banned_after(prior, [1, 2, 3, 0, 1]) == {2}  # "1 2" is in the text before the window
    assert banned_after(prior, [0], [4, 5, 0, 4]) == {5}  # "4 5" was written in this window
    assert banned_after(prior, [1, 2, 3], [5]) == set()  # "5" was never followed by anything


def test_a_sentence_ends_only_where_the_stories_end_one_after_the_same_two_tokens():
    # 0 <|endoftext|>, 1 ".", 2 "!", 3-6 words: "she" 3, "smiled" 4, "and" 5, "ran" 6
    is_word = torch.tensor([False, False, False, True, True, True, True])
    stories = [[3, 4, 1, 3, 6, 2], [5, 3, 4, 5, 6, 1]]  # "she smiled." "she ran!" "and she smiled and ran."
    ngrams = build_ngram_model(stories, vocab_size=7, boundary_id=0)
    prior = WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.5, sentence_ends=[1, 2], real_sentence_ends=True)
    prior.restart([0, 3], prompt_length=2)  # the text so far: "she"
    rows = torch.tensor([[0, 3, 4],  # "she smiled": "." ends a story sentence there, "!" never does
                         [0, 3, 6],  # "she ran": "!" does, "." does not
                         [0, 3, 5],  # "she and": neither
                         [0, 3, 1]])  # "she ." (the tokens before the next one are "she" and "."): neither
    scores = prior(rows, torch.zeros(4, 7))
    assert scores[:, 1:3].isinf().tolist() == [[False, True], [True, False], [True, True], [True, True]]
    assert not scores[:, 3:].isinf().any()  # words are never banned by the rule
    # the rule reads the text before the window: "and ran" (last token of the history, first of the row)
    prior.restart([0, 5], prompt_length=2)
    assert prior(torch.tensor([[0, 5, 6]]), torch.zeros(1, 7))[0, 1:3].isinf().tolist() == [False, True]
    # without the rule, or without the n-gram model to say where stories end, no end is banned
    for off in (WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.5, sentence_ends=[1, 2]),
                WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.0, sentence_ends=[1, 2],
                             real_sentence_ends=True)):
        off.restart([0, 3], prompt_length=2)
        assert not off(rows, torch.zeros(4, 7)).isinf().any()


def test_the_sentence_bonus_raises_every_allowed_end_by_the_same_amount():
    is_word = torch.tensor([False, False, False, True, True, True, True])
    ngrams = build_ngram_model([[3, 4, 1, 3, 6, 2], [5, 3, 4, 5, 6, 1]], vocab_size=7, boundary_id=0)
    rows = torch.tensor([[0, 3, 4], [0, 3, 6], [0, 3, 5]])
    scores = torch.randn(3, 7)
    plain = WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.5, sentence_ends=[1, 2], real_sentence_ends=True)
    bonus = WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.5, sentence_ends=[1, 2], real_sentence_ends=True,
                         sentence_bonus=2.5)
    for prior in (plain, bonus):
        prior.restart([0, 3], prompt_length=2)
    before, after = plain(rows, scores.clone()), bonus(rows, scores.clone())
    assert torch.equal(after[:, 3:], before[:, 3:])  # words keep their scores
    allowed = ~before[:, 1:3].isinf()
    assert torch.allclose(after[:, 1:3][allowed], before[:, 1:3][allowed] + 2.5)
    assert after[:, 1:3][~allowed].isinf().all()  # a banned end stays banned
    # without the rule (or the n-gram model it reads) no end gains: anywhere, the bonus ends sentences
    # at "the other." and "one."
    for no_rule in (WritingPrior(is_word, sentence_ends=[1, 2], real_sentence_ends=True, sentence_bonus=2.5),
                    WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.5, sentence_ends=[1, 2],
                                 sentence_bonus=2.5)):
        no_rule.restart([0, 3], prompt_length=2)
        base = WritingPrior(is_word, ngram_model=no_rule.ngram_model, ngram_weight=no_rule.ngram_weight)
        base.restart([0, 3], prompt_length=2)
        assert torch.equal(no_rule(rows, scores.clone()), base(rows, scores.clone()))


def test_a_token_the_stories_never_put_after_the_last_one_pays_the_unseen_pair_cost():
    is_word = torch.tensor([False, False, False, True, True, True, True])
    ngrams = build_ngram_model([[3, 4, 1, 3, 6, 2], [5, 3, 4, 5, 6, 1]], vocab_size=7, boundary_id=0)
    scores = torch.randn(2, 7)
    plain = WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.5)
    costly = WritingPrior(is_word, ngram_model=ngrams, ngram_weight=0.5, unseen_pair_cost=3.0)
    for prior in (plain, costly):
        prior.restart([0, 5], prompt_length=2)  # the text so far ends "and"
    # after "and" (the history's last token): "she" 3 and "ran" 6 follow it in the stories; after "she": "smiled" 4, "ran" 6
    for row, followers in (([0, 5], {3, 6}), ([0, 5, 3], {4, 6})):
        before = plain(torch.tensor([row]), scores[:1].clone())[0]
        after = costly(torch.tensor([row]), scores[:1].clone())[0]
        expected = before - torch.tensor([0.0 if token in followers else 3.0 for token in range(7)])
        assert torch.allclose(after, expected), row
