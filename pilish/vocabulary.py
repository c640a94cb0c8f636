"""The vocabulary tables: what each token of one tokenizer is to the Pilish, as tensors.

Built once per tokenizer (and cached), shared by every text written with it: the letters in each
token, whether it may stand as a word, what kind of mark it is, and the word ids of each length.
The processor then only gathers from these tables at each step, never loops over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Iterable

import torch

from pilish.rules import digits_of_word
from pilish.tokens import (CLOSING_MARKS, MARK, OTHER, QUOTES, WORD, is_punctuation_token, is_quote_token,
                           is_word_token, letters_in, token_text)

# The English words of one letter. The stories' other single letters ("x marks the spot", "mr. s")
# read as no word where a digit 1 needs one ("a y a special tree"), so they never stand as words.
ONE_LETTER_WORDS = ("a", "i")


@dataclass(frozen=True)
class VocabularyTables:
    """Per-token facts of a vocabulary (one entry per token id)."""

    letters: torch.LongTensor  # letters in the token (▁ and marks count none)
    is_word: torch.BoolTensor  # may stand as a word (not banned; of one letter, only ONE_LETTER_WORDS)
    is_mark: torch.BoolTensor  # a mark that may follow a word (. , ! ? ; :), not banned nor an end token
    is_quote: torch.BoolTensor  # a quote that may follow a mark (`said, "`), not banned nor an end token
    is_closing: torch.BoolTensor  # a mark a text may end on (. ! ?), not banned
    is_end: torch.BoolTensor  # an end token (<|endoftext|>)
    kind: torch.LongTensor  # WORD, MARK or OTHER: what punctuation may follow the token
    ids_with_length: torch.BoolTensor  # [longest word + 1, vocabulary]: the word ids of each length (row 0: none)

    @property
    def size(self) -> int:
        return len(self.letters)

    def available_lengths(self) -> set[int]:
        """The word lengths the vocabulary has."""
        return set(self.letters[self.is_word].tolist())

    def digits_spelled(self, rules: str) -> torch.LongTensor:
        """[vocabulary]: digits each token spells when generated under `rules`: words by their
        length, everything else nothing. (A >10-letter word under basic is never allowed; counting
        it as one digit keeps the arithmetic defined for rows that contain one anyway, e.g. in a prompt.)"""
        longest = int(self.letters.max()) if self.size else 0
        spelled = [digits_of_word(n, rules) for n in range(longest + 1)]
        by_length = torch.tensor([1 if digits is None else len(digits) for digits in spelled], dtype=torch.long)
        return torch.where(self.is_word, by_length.to(self.letters.device)[self.letters], 0)

    def to(self, device) -> VocabularyTables:
        """The same tables on `device`."""
        return replace(self, **{item.name: getattr(self, item.name).to(device) for item in fields(self)})


def _mask(size: int, ids: Iterable[int]) -> torch.BoolTensor:
    """[size]: True at `ids` (ids beyond the vocabulary are never allowed anyway, so they need no marking)."""
    mask = torch.zeros(size, dtype=torch.bool)
    mask[[i for i in ids if 0 <= i < size]] = True
    return mask


@lru_cache(maxsize=4)
def vocabulary_tables(vocab: tuple[str, ...], banned_ids: tuple[int, ...] = (),
                      end_ids: tuple[int, ...] = ()) -> VocabularyTables:
    """The tables of `vocab` (tokens by id), with `banned_ids` never offered and `end_ids` ending a text."""
    size = len(vocab)
    banned, is_end = _mask(size, banned_ids), _mask(size, end_ids)
    letters = torch.tensor([letters_in(token) for token in vocab], dtype=torch.long)
    is_word = torch.tensor([is_word_token(token) and (letters_in(token) != 1 or token_text(token).lower() in
                            ONE_LETTER_WORDS) for token in vocab], dtype=torch.bool) & ~banned
    is_punctuation = torch.tensor([is_punctuation_token(token) for token in vocab], dtype=torch.bool)
    is_punctuation &= ~banned & ~is_end
    is_quote = is_punctuation & torch.tensor([is_quote_token(token) for token in vocab], dtype=torch.bool)
    is_mark = is_punctuation & ~is_quote
    is_closing = torch.tensor([token in CLOSING_MARKS for token in vocab], dtype=torch.bool) & ~banned
    kind = torch.full((size,), OTHER, dtype=torch.long)
    kind[is_word], kind[is_mark] = WORD, MARK
    longest = max(int(letters[is_word].max()) if is_word.any() else 0, 10)
    ids_with_length = torch.zeros(longest + 1, size, dtype=torch.bool)
    ids_with_length[letters[is_word], is_word.nonzero().squeeze(1)] = True
    ids_with_length[0] = False
    return VocabularyTables(letters, is_word, is_mark, is_quote, is_closing, is_end, kind, ids_with_length)


def tables_for(tokenizer, quotes: bool = True) -> VocabularyTables:
    """The tables of a tokenizer's vocabulary: its special tokens never offered, <|endoftext|> ends a
    text; without `quotes`, no mark that holds a quote (`"`, `'`, `."`) is offered either."""
    vocab = tuple(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    banned = tuple(tokenizer.all_special_ids)
    if not quotes:
        banned += tuple(i for i, token in enumerate(vocab)
                        if is_punctuation_token(token) and any(char in QUOTES for char in token_text(token)))
    return vocabulary_tables(vocab, banned, (tokenizer.eos_token_id,))
