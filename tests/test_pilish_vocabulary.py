"""pilish.vocabulary: the per-token tables of a vocabulary, built once and shared by every text."""

import pytest
import torch
from transformers import AutoTokenizer

from lmkit.text import SPACE_MARK as M
from pilish.tokens import MARK, OTHER, WORD
from pilish.vocabulary import tables_for, vocabulary_tables

# ids 0-2 special, 3-4 marks, 5-6 an opening and a closing quote, 7 a word, 8 no word, 9 a mark after a space
# (no mark), 10-11 words of 10 and 12 letters
VOCAB = ("<|endoftext|>", "[UNK]", "[PAD]", ".", ",", M + '"', '"', M + "a", M + "3rd", M + ",", M + "lighthouse",
         M + "thunderstorm")


def tensor_ids(mask):
    return mask.nonzero().flatten().tolist()


def test_tables_say_what_each_token_is():
    tables = vocabulary_tables(VOCAB, banned_ids=(0, 1, 2), end_ids=(0,))
    assert tables.size == len(VOCAB)
    assert tables.letters.tolist() == [9, 3, 3, 0, 0, 0, 0, 1, 2, 0, 10, 12]  # special tokens' letters too
    assert tensor_ids(tables.is_word) == [7, 10, 11]  # not the banned specials, nor "3rd"
    assert tensor_ids(tables.is_mark) == [3, 4] and tensor_ids(tables.is_quote) == [5, 6]  # ▁, is no mark
    assert tensor_ids(tables.is_closing) == [3] and tensor_ids(tables.is_end) == [0]
    assert tables.kind.tolist() == [OTHER] * 3 + [MARK, MARK, OTHER, OTHER, WORD, OTHER, OTHER, WORD, WORD]
    assert tables.available_lengths() == {1, 10, 12}


def test_ids_with_length_index_the_words_of_each_length():
    tables = vocabulary_tables(VOCAB, banned_ids=(0, 1, 2), end_ids=(0,))
    assert tables.ids_with_length.shape == (13, len(VOCAB))  # lengths 0..12, the longest word
    assert {length: tensor_ids(row) for length, row in enumerate(tables.ids_with_length) if row.any()} == {
        1: [7], 10: [10], 12: [11]}
    short = vocabulary_tables(VOCAB[:8], banned_ids=(0, 1, 2))
    assert short.ids_with_length.shape == (11, 8)  # at least lengths 0..10: a 0 is always spelled by 10 letters


def test_digits_spelled_depend_on_the_rules():
    tables = vocabulary_tables(VOCAB, banned_ids=(0, 1, 2), end_ids=(0,))
    # words spell by their length ("thunderstorm": one digit, never allowed, under basic; "12" under standard)
    assert tables.digits_spelled("basic").tolist() == [0] * 7 + [1, 0, 0, 1, 1]
    assert tables.digits_spelled("standard").tolist() == [0] * 7 + [1, 0, 0, 1, 2]


def test_tables_are_built_once_per_vocabulary_and_move_together():
    assert vocabulary_tables(VOCAB, (0, 1, 2), (0,)) is vocabulary_tables(VOCAB, (0, 1, 2), (0,))
    moved = vocabulary_tables(VOCAB, (0, 1, 2), (0,)).to("cpu")
    assert all(getattr(moved, name).device == torch.device("cpu") for name in ("letters", "kind", "ids_with_length"))


def test_tables_for_a_tokenizer_ban_its_special_tokens(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tables = tables_for(tokenizer)
    assert tables.size == len(tokenizer)
    assert not tables.is_word[tokenizer.all_special_ids].any()
    assert tensor_ids(tables.is_end) == [tokenizer.eos_token_id]
    assert bool(tables.is_word[tokenizer.convert_tokens_to_ids(M + "lighthouse")])


def test_of_one_letter_words_only_a_and_i_stand_as_words():
    # "x", "y" and "s" are letters the stories use ("mr. s"), no words: "a y a special tree" reads as none
    vocab = ("<|endoftext|>", M + "a", M + "i", M + "x", M + "y", M + "s", M + "I", M + "at", M + "ox")
    tables = vocabulary_tables(vocab, banned_ids=(0,), end_ids=(0,))
    assert tensor_ids(tables.ids_with_length[1]) == [1, 2, 6]  # the digit 1 is spelled by "a" or "i" only
    assert tensor_ids(tables.is_word) == [1, 2, 6, 7, 8]
    assert tables.digits_spelled("basic").tolist() == [0, 1, 1, 0, 0, 0, 1, 1, 1]
    assert tables.available_lengths() == {1, 2}
    no_real_ones = vocabulary_tables(vocab[:1] + vocab[3:6], banned_ids=(0,))
    assert not no_real_ones.ids_with_length[1].any() and no_real_ones.available_lengths() == set()


def test_the_plan_says_so_when_no_real_one_letter_word_can_spell_a_one():
    from pilish.processor import PilishLogitsProcessor
    from pilish.rules import PilishError
    with pytest.raises(PilishError, match="no words of 1 letter"):
        PilishLogitsProcessor([M + "x", M + "abc", "."], "31")


def test_tables_move_to_another_device_whole():
    """"meta" is a device every machine has: each table must go there (CPU to CPU would hide a table left
    behind)."""
    import dataclasses
    tables = vocabulary_tables(VOCAB, banned_ids=(0, 1, 2), end_ids=(0,))
    moved = tables.to("meta")
    tensors = [item.name for item in dataclasses.fields(tables) if isinstance(getattr(tables, item.name), torch.Tensor)]
    assert tensors and all(getattr(moved, name).device.type == "meta" for name in tensors)
    assert all(getattr(tables, name).device.type == "cpu" for name in tensors)  # a copy: the original stays


def test_ids_outside_the_vocabulary_are_not_marked():
    from pilish.vocabulary import _mask
    assert _mask(3, [0, 2]).tolist() == [True, False, True]
    assert _mask(3, [3, -1, 4]).tolist() == [False] * 3  # the size itself is one beyond the last id
    tables = vocabulary_tables(VOCAB, banned_ids=(0, 1, 2, len(VOCAB)), end_ids=(0, len(VOCAB)))
    assert tensor_ids(tables.is_word) == [7, 10, 11] and tensor_ids(tables.is_end) == [0]


def test_tables_for_a_tokenizer_without_quotes_offer_no_mark_that_holds_one(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    with_quotes, without = tables_for(tokenizer), tables_for(tokenizer, quotes=False)
    quoted = [i for i, token in enumerate(vocab) if (with_quotes.is_mark[i] or with_quotes.is_quote[i])
              and any(char in "\"'" for char in token)]
    assert {vocab[i] for i in quoted} >= {M + '"', '"'}  # the corpus has dialogue: there are some to leave out
    assert not (without.is_mark | without.is_quote)[quoted].any()
    # every other mark, and every word, is offered as before
    others = (with_quotes.is_mark | with_quotes.is_quote).clone()
    others[quoted] = False
    assert torch.equal(without.is_mark | without.is_quote, others)
    assert torch.equal(without.is_word, with_quotes.is_word) and torch.equal(without.is_closing, with_quotes.is_closing)
