"""pilish.prior: the WritingPrior's whole-text rules and n-gram bonuses, and the n-gram table."""

import torch

from lmkit.folders import load_tokenizer
from pilish.prior import WritingPrior, ngram_table


def test_writing_prior_bans_repeats_of_the_whole_text_and_adds_the_prior():
    is_word = torch.tensor([False, True, True, True, True, True])  # id 0 is a mark, 1-5 are words
    size = 6
    ngrams = {"bigrams": torch.tensor(sorted([1 * size + 2, 2 * size + 3, 2 * size + 4])),
              "trigrams": torch.tensor([(1 * size + 2) * size + 5])}
    processor = WritingPrior(is_word, no_repeat_words=3, no_immediate_repeat=True, ngrams=ngrams,
                             bigram_bonus=1.0, trigram_bonus=2.0)
    processor.restart([1, 2, 3, 0], prompt_length=2)  # the text so far: words 1 2 3, then a mark
    rows = torch.tensor([[3, 0, 1, 2],  # new words 1 2: "1 2 3" is in the text, so 3 is banned; 2 twice
                         [3, 0, 4, 0]])  # new word 4, then a mark: 4 again would be "4. 4"
    scores = processor(rows, torch.zeros(2, size))
    inf = float("-inf")
    # row 0: 4 follows 2 in the data (+1), 5 follows "1 2" (+2); 3 is banned although it follows 2
    assert scores.tolist() == [[0, 0, inf, inf, 1, 2], [0, 0, 0, 0, inf, 0]]


def test_writing_prior_indexes_only_the_new_words_of_each_window_and_matches_a_fresh_one():
    is_word = torch.tensor([False] + [True] * 7)
    size = 8
    ngrams = {"bigrams": torch.tensor(sorted(a * size + b for a in range(1, 8) for b in (2, 5))),
              "trigrams": torch.tensor(sorted([(1 * size + 2) * size + 6, (3 * size + 4) * size + 7]))}
    text = [1, 2, 0, 3, 4, 1, 2, 5, 3, 4, 6, 0, 1, 2, 7, 3, 4]
    rows = torch.tensor([[3, 4, 1, 2], [4, 0, 3, 4], [0, 7, 0, 7]])
    kept = WritingPrior(is_word, no_repeat_words=3, no_immediate_repeat=True, ngrams=ngrams,
                        bigram_bonus=1.0, trigram_bonus=0.5)
    for end in (2, 5, 9, 12, len(text)):  # the windows of one text: each history extends the last
        kept.restart(text[:end], prompt_length=1)
        fresh = WritingPrior(is_word, no_repeat_words=3, no_immediate_repeat=True, ngrams=ngrams,
                             bigram_bonus=1.0, trigram_bonus=0.5)
        fresh.restart(text[:end], prompt_length=1)
        assert kept.seen == fresh.seen
        assert torch.equal(kept(rows, torch.zeros(3, size)), fresh(rows, torch.zeros(3, size)))
    # the whole text: "3 4" was followed by 1 and 6, and "1 2" by 0-skipped 3, 5 and 7
    assert kept.seen[(3, 4)] == {1, 6} and kept.seen[(1, 2)] == {3, 5, 7}
    scores = kept(rows, torch.zeros(3, size)).tolist()
    inf = float("-inf")
    # row 0 ends "1 2": 3, 5 and 7 followed "1 2" in the text, 2 is the last word; 5 and 2 follow any word (+1),
    # 6 follows "1 2" in the data (+0.5)
    assert scores[0] == [0, 0, inf, inf, 0, inf, 0.5, inf]
    # row 2 ends "7 7" (its own immediate repeat, through marks): 7 is banned, 2 and 5 gain the bigram bonus
    assert scores[2] == [0, 0, 1, 0, 0, 1, 0, inf]
    # a history that does not extend the last one (another text) is indexed from the start
    kept.restart([6, 6, 6], prompt_length=0)
    assert kept.seen == {(6, 6): {6}}


def test_writing_prior_adds_the_mark_prior_after_the_last_two_tokens_even_across_windows():
    is_word = torch.tensor([False, False, True, True, True])  # ids 0 (".") and 1 (",") are marks
    size = 5
    # in the data: "2 3 ." and "3 , 1"... and ", 4 ." is no key a row below ends on
    marks = torch.tensor(sorted([(2 * size + 3) * size + 0, (3 * size + 1) * size + 0, (1 * size + 4) * size + 0]))
    processor = WritingPrior(is_word, ngrams={"marks": marks}, mark_bonus=3.0)
    processor.restart([4, 2, 3], prompt_length=3)  # the window's text ends "2 3"; nothing new yet
    rows = torch.tensor([[4, 2, 3], [4, 2, 3]])
    assert processor(rows, torch.zeros(2, size)).tolist() == [[3, 0, 0, 0, 0]] * 2
    rows = torch.tensor([[4, 2, 3, 1], [4, 2, 3, 4]])  # new tokens "," and 4: "3 ," and "3 4" end them
    assert processor(rows, torch.zeros(2, size)).tolist() == [[3, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    # an ngrams.pt saved before the mark prior has no "marks": the bonus is off, nothing breaks
    old = WritingPrior(is_word, ngrams={"bigrams": torch.tensor([2 * size + 3])}, mark_bonus=3.0)
    old.restart([4, 2, 3], prompt_length=3)
    assert old(torch.tensor([[4, 2, 3]]), torch.zeros(1, size)).tolist() == [[0] * size]


def test_writing_prior_pairs_quotes_across_windows():
    is_word = torch.tensor([False, False, False, True, True])  # 0 opens a quote, 1 closes one, 2 is ","
    processor = WritingPrior(is_word, quotes=([0], [1]))
    inf = float("-inf")
    processor.restart([3, 2, 0, 4], prompt_length=4)  # `tom, "go` : a quote is open
    rows = torch.tensor([[3, 2, 0, 4, 3],  # a word: still open, so no second opening quote
                         [3, 2, 0, 4, 1]])  # it closed in this window: no closing quote now
    assert processor(rows, torch.zeros(2, 5)).tolist() == [[inf, 0, 0, 0, 0], [0, inf, 0, 0, 0]]
    processor.restart([3, 2, 0, 4, 1, 3], prompt_length=6)  # the next window: the quote closed before it
    assert processor(torch.tensor([[4, 1, 3]]), torch.zeros(1, 5)).tolist() == [[0, inf, 0, 0, 0]]
    processor.restart([3, 2, 0, 4, 1, 3, 2, 0], prompt_length=8)
    assert processor(torch.tensor([[3, 2, 0]]), torch.zeros(1, 5)).tolist() == [[inf, 0, 0, 0, 0]]
    processor.restart([4], prompt_length=1)  # another text: nothing open
    assert processor(torch.tensor([[4]]), torch.zeros(1, 5)).tolist() == [[0, inf, 0, 0, 0]]


def test_writing_prior_without_rules_changes_nothing():
    processor = WritingPrior(torch.tensor([False, True, True]))
    processor.restart([1, 1], prompt_length=0)
    scores = torch.randn(2, 3)
    assert torch.equal(processor(torch.tensor([[1], [2]]), scores.clone()), scores)


def test_ngram_table_counts_word_ngrams_across_marks_and_the_marks_after_two_tokens(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    size = len(tokenizer)
    table = ngram_table(tokenizer, ['Mom said, "Let\'s play!"', "I am so happy."])

    def ids(*tokens):
        found = tokenizer.convert_tokens_to_ids(list(tokens))
        assert tokenizer.unk_token_id not in found
        return found

    def keys(*grams):
        out = []
        for gram in grams:
            key = 0
            for token_id in ids(*gram):
                key = key * size + token_id
            out.append(key)
        return sorted(out)

    assert table["bigrams"].tolist() == keys(("▁mom", "▁said"), ("▁said", "▁let's"), ("▁let's", "▁play"),
                                             ("▁i", "▁am"), ("▁am", "▁so"), ("▁so", "▁happy"))
    assert table["trigrams"].tolist() == keys(("▁mom", "▁said", "▁let's"), ("▁said", "▁let's", "▁play"),
                                              ("▁i", "▁am", "▁so"), ("▁am", "▁so", "▁happy"))
    # the marks that follow two tokens: `mom said ,`, `said , "`, `let's play !`, `play ! "`, `so happy .`
    assert table["marks"].tolist() == keys(("▁mom", "▁said", ","), ("▁said", ",", '▁"'), ("▁let's", "▁play", "!"),
                                           ("▁play", "!", '"'), ("▁so", "▁happy", "."))
    assert ngram_table(tokenizer, ["Mom said, mom said."], min_count=2)["marks"].tolist() == []
