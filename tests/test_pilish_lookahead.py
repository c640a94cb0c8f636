"""pilish.lookahead: the table of how well each length can follow each token, and the processor that
charges a word after which the next digit reads badly (where the next digit is 1: "saw a", not "the a")."""

import math

import pytest
import torch

from lmkit.text import SPACE_MARK as M
from pilish.lookahead import ADD_K, NextDigitLookahead, lookahead_table
from pilish.processor import PilishLogitsProcessor
from pilish.vocabulary import vocabulary_tables

VOCAB = ("<|endoftext|>", ".", M + "a", M + "i", M + "saw", M + "the", M + "big", M + "dog", M + "x")
EOT, DOT, A, I, SAW, THE, BIG, DOG, X = range(len(VOCAB))
V = len(VOCAB)
# "x saw a", "big saw a", "x saw the": "saw a" follows two different tokens, "saw the" one;
# "dog . i": a sentence ends after "dog", then "i"; "the" is followed by nothing of one letter
TRIGRAMS = [(X, SAW, A), (BIG, SAW, A), (X, SAW, THE), (EOT, DOG, DOT), (DOG, DOT, I), (SAW, THE, BIG)]


def keys(trigrams):
    return torch.tensor(sorted((a * V + b) * V + c for a, b, c in trigrams), dtype=torch.long)


def tables():
    return vocabulary_tables(VOCAB, banned_ids=(EOT,), end_ids=(EOT,))


def table():
    return lookahead_table(keys(TRIGRAMS), tables().ids_with_length, torch.tensor([DOT]))


def test_the_table_holds_the_likeliest_word_of_each_length_after_each_token():
    found, k = table(), ADD_K
    assert found[1, SAW] == pytest.approx(math.log((2 + k) / (3 + k * V)))  # "saw a": 2 of the 3 after "saw"
    assert found[3, SAW] == pytest.approx(math.log((1 + k) / (3 + k * V)))  # "saw the"
    assert found[1, THE] == pytest.approx(math.log(k / (1 + k * V)))  # nothing of one letter after "the"
    # "dog . i": one letter after "dog" through the full stop, P(. | dog) P(i | .)
    assert found[1, DOG] == pytest.approx(math.log((1 + k) / (1 + k * V)) + math.log((1 + k) / (1 + k * V)))
    assert found[2].max() == -math.inf and found[0].max() == -math.inf  # no words of two letters; row 0 is none
    assert found[-1].eq(0).all()  # the last row: nothing left to spell, nothing owed
    assert found[1, SAW] > found[1, DOG] > found[1, THE]


def gains(digits, rows, weight):
    """[rows, V]: what the look-ahead adds to each token's score."""
    pilish = PilishLogitsProcessor(tables(), digits)
    return NextDigitLookahead(pilish, table(), weight)(torch.tensor(rows), torch.zeros(len(rows), V))


def score_after_the_mask(digits, rows, weight):
    pilish = PilishLogitsProcessor(tables(), digits)
    input_ids = torch.tensor(rows)
    return pilish(input_ids, NextDigitLookahead(pilish, table(), weight)(input_ids, torch.zeros(len(rows), V)))


def test_where_the_next_digit_is_1_a_word_often_followed_by_a_beats_one_never_followed_by_it():
    scores = score_after_the_mask("31", [[EOT]], weight=1.0)  # a 3-letter word now, then a 1-letter one
    assert scores[0, SAW] > scores[0, THE]
    assert scores[0, SAW] - scores[0, THE] == pytest.approx(table()[1, SAW] - table()[1, THE])
    assert score_after_the_mask("31", [[EOT]], weight=0.0)[0, SAW] == 0.0  # weight 0: the mask alone
    # where a 3 follows instead, "the" is as good as "saw" (neither is followed by a 3-letter word more freely)
    scores = score_after_the_mask("33", [[EOT]], weight=1.0)
    assert scores[0, SAW] - scores[0, THE] == pytest.approx(table()[3, SAW] - table()[3, THE])


def test_the_gain_is_the_change_in_look_ahead_so_it_adds_up_to_where_a_row_stands():
    # after "saw" (digit 3 spelled) the row owes a 1: its look-ahead now is table[1, saw]; "a" ends the
    # digits, after which nothing is owed (0): the gain of "a" is 0 - table[1, saw]
    scores = score_after_the_mask("31", [[EOT, SAW], [EOT, THE]], weight=2.0)
    assert scores[0, A] == pytest.approx(-2.0 * table()[1, SAW].item())
    assert scores[1, A] == pytest.approx(-2.0 * table()[1, THE].item())
    # summed over the text, "saw a" and "the a" both end at 0 + their first look-ahead's difference cancels
    first = score_after_the_mask("31", [[EOT]], weight=2.0)[0]
    assert first[SAW] + scores[0, A] == pytest.approx(first[THE] + scores[1, A])
    assert scores[0, X] == -math.inf and scores[0, BIG] == -math.inf  # what the mask bans stays banned


def test_a_mark_gains_nothing_and_the_word_after_it_is_judged_from_the_last_word():
    # after "dog" (digit 3) the row owes 1 and 1: the table credits "dog" for "dog . i" already
    found = table()
    gain = gains("311", [[EOT, EOT, DOG], [EOT, DOG, DOT]], 1.0)
    assert gain[0, DOT] == 0.0 and gain[1, DOT] == 0.0
    # "i" after "dog ." (or after "dog"): from dog's look-ahead for a 1 to i's for the next 1
    assert gain[1, I] == pytest.approx(found[1, I] - found[1, DOG]) and gain[1, I] == gain[0, I]


def test_writing_puts_the_lookahead_after_the_mask_and_stays_exact_through_windows(model_dir, corpus_file):
    from lmkit.folders import load_model
    from pilish.fluency import read_stories
    from pilish.ngram import ngram_model
    from pilish.rules import get_digits
    from pilish.writing import WriteOptions, make_processors, write
    model, tokenizer = load_model(model_dir)
    ngrams = ngram_model(tokenizer, read_stories(corpus_file))
    processors, pilish, _ = make_processors(tokenizer, "3141", WriteOptions(lookahead_weight=1.0), ngrams)
    assert isinstance(processors[-2], NextDigitLookahead) and processors[-1] is pilish  # the mask comes last
    assert not any(isinstance(p, NextDigitLookahead) for p in make_processors(
        tokenizer, "3141", WriteOptions(lookahead_weight=0.0), ngrams)[0])
    # the look-ahead alone, no prior: the mask is then the first processor, and the window loop still restarts it
    alone = WriteOptions(no_repeat_words=0, no_immediate_repeat=False, balance_quotes=False, ngram_weight=0.0,
                         lookahead_weight=1.0, num_beams=2)
    digits = get_digits("pi", 60)
    assert write(model, tokenizer, digits, alone, ngrams=ngrams).verification.ok


@pytest.mark.parametrize("rules", ["basic", "standard"])
def test_every_words_gain_is_read_from_where_that_word_leaves_the_plan(rules):
    """Word by word, as the module defines it: a word that spells k digits moves the plan from p to p + k,
    and gains weight x (its look-ahead there - the row's now). Under the standard rules an 11-letter word
    spells two digits (1, 1), so its look-ahead is read two digits on."""
    vocab = VOCAB + (M + "butterflies",)
    size, flies = len(vocab), len(vocab) - 1
    trigrams = TRIGRAMS + [(SAW, A, flies), (A, flies, DOT), (flies, DOT, SAW), (X, DOT, SAW)]  # ". saw" > ". i"
    tabs = vocabulary_tables(vocab, banned_ids=(EOT,), end_ids=(EOT,))
    found = lookahead_table(torch.tensor(sorted((a * size + b) * size + c for a, b, c in trigrams)),
                            tabs.ids_with_length, torch.tensor([DOT]))
    digits = "3113113"
    pilish = PilishLogitsProcessor(tabs, digits, rules=rules)
    rows = [[EOT, EOT, EOT], [EOT, EOT, SAW], [EOT, SAW, A], [SAW, A, DOT], [EOT, SAW, flies]]
    gain = NextDigitLookahead(pilish, found, 0.5)(torch.tensor(rows), torch.zeros(len(rows), size))
    plan, spelled = pilish.plan, pilish.digits_spelled

    def look(position, word):
        return max(found[plan.one_digit_length[position], word], found[plan.two_digit_length[position], word])

    for r, row in enumerate(rows):
        position = int(pilish.positions(torch.tensor([row]))[0])
        last = next(token for token in reversed(row) if tabs.is_word[token] or token == EOT)
        now = look(position, last)
        for word in range(size):
            if not tabs.is_word[word]:
                assert gain[r, word] == 0.0
                continue
            expected = 0.5 * (look(min(position + int(spelled[word]), len(digits)), word) - now)
            assert torch.isclose(gain[r, word], torch.as_tensor(expected), equal_nan=True), (r, vocab[word])
    # the long word moves two digits on only under the standard rules: from "saw" (1 spelled) to 3, or to 2
    assert int(spelled[flies]) == (2 if rules == "standard" else 1)
