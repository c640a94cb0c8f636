"""The writing prior: rules and bonuses over the whole text, from the training data's n-grams.

`WritingPrior` is a LogitsProcessor that sees the whole text so far, not just the window the model
reads, so its rules survive the sliding window of a long text: no word twice in a row ("a a"), no
word n-gram the text already has, a double quote that opens only when none is open, and a bonus
for the words that follow the last one or two words somewhere in the training data and for the
marks that follow the last two tokens there (`home .`, `said ,`, `, "`).

`ngram_table` collects those n-grams from the training stories; train_model.py saves them beside
the model as NGRAMS_FILE, and `load_ngrams` reads them back.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

import torch
from transformers import LogitsProcessor

from lmkit.files import replace_atomically
from pilish.vocabulary import tables_for

NGRAMS_FILE = "ngrams.pt"  # in a model folder: the training data's word n-grams, for the prior


class WritingPrior(LogitsProcessor):
    """The rules and bonuses above, for every row at each step.

    Words are the word tokens (marks in between are skipped, as a reader skips them). Bans set a
    score to -inf; put this processor before PilishLogitsProcessor, whose mask comes last and which
    rescues a row whose allowed words were all banned.
    """

    def __init__(self, is_word: torch.BoolTensor, no_repeat_words: int = 0, no_immediate_repeat: bool = False,
                 ngrams: dict | None = None, bigram_bonus: float = 0.0, trigram_bonus: float = 0.0,
                 mark_bonus: float = 0.0, quotes: tuple[Iterable[int], Iterable[int]] = ((), ())):
        self.is_word = is_word.tolist()
        self.vocab_size = len(self.is_word)
        self.no_repeat_words = no_repeat_words
        self.no_immediate_repeat = no_immediate_repeat
        ngrams = ngrams or {}
        # (table, bonus) per kind of key; older ngrams.pt files have no marks
        self.bonuses = {name: (ngrams.get(name), bonus) for name, bonus in
                       (("bigrams", bigram_bonus), ("trigrams", trigram_bonus), ("marks", mark_bonus)) if bonus}
        # quotes = (opening, closing) quote ids: a quote opens only when none is open, and closes only
        # an open one (what a reader pairs; the model alone closes quotes it never opened)
        self.opening, self.closing = (set(ids) for ids in quotes)
        self.text, self.history, self.seen, self.quote_open = [], [], {}, False
        self.restart([], 0)

    def restart(self, history: list[int], prompt_length: int) -> None:
        """The text so far (its ids, before the window's new tokens) and where the new tokens start.

        Each window's history extends the last one, so only its new words are indexed: the cost of a
        window does not grow with the text (a 10,000-digit text has ~200 windows)."""
        if history[:len(self.text)] != self.text:  # another text: index it from the start
            self.text, self.history, self.seen, self.quote_open = [], [], {}, False
        new = history[len(self.text):]
        words = self.history + self._words(new)
        self.quote_open = quote_open_after(self.quote_open, new, self.opening, self.closing)
        n = self.no_repeat_words
        if n >= 2:
            for i in range(max(0, len(self.history) - n + 1), len(words) - n + 1):
                self.seen.setdefault(tuple(words[i:i + n - 1]), set()).add(words[i + n - 1])
        self.text, self.history = list(history), words
        self.last_tokens = list(history[-2:])
        self.prompt_length = prompt_length

    def _words(self, ids: list[int]) -> list[int]:
        return [t for t in ids if t < self.vocab_size and self.is_word[t]]

    def _banned(self, ids: list[int], new_words: list[int], words: list[int]) -> set[int]:
        """What the row with these new tokens may not take next."""
        n = self.no_repeat_words
        banned = set()
        if self.no_immediate_repeat and words:
            banned.add(words[-1])
        if n >= 2 and len(words) >= n - 1:
            key = tuple(words[-(n - 1):])
            banned |= self.seen.get(key, set())
            tail = self.history[-(n - 1):] + new_words  # n-grams the row itself wrote in this window
            banned |= {gram[-1] for gram in zip(*(tail[k:] for k in range(n))) if gram[:-1] == key}
        if self.opening or self.closing:
            banned |= self.opening if quote_open_after(self.quote_open, ids, self.opening, self.closing) \
                else self.closing
        return banned

    def _keys(self, ids: list[int], words: list[int]) -> dict[str, int]:
        """The row's key into each n-gram table: its last word, last two words, last two tokens."""
        size, keys = self.vocab_size, {}
        if words:
            keys["bigrams"] = words[-1]
        if len(words) >= 2:
            keys["trigrams"] = words[-2] * size + words[-1]
        last = (self.last_tokens + ids)[-2:]
        if len(last) == 2 and max(last) < size:
            keys["marks"] = last[0] * size + last[1]
        return keys

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        banned_rows, banned_ids = [], []
        keys = {name: ([], []) for name in self.bonuses}  # name: (keys, rows)
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            new_words = self._words(ids)
            words = self.history[-max(self.no_repeat_words, 2):] + new_words  # enough words for every key
            banned = self._banned(ids, new_words, words)
            banned_rows += [row] * len(banned)
            banned_ids += banned
            for name, key in self._keys(ids, words).items():
                if name in keys:
                    keys[name][0].append(key)
                    keys[name][1].append(row)
        if banned_ids:
            scores[banned_rows, banned_ids] = float("-inf")
        found = [followers(table, keys[name][0], bonus, keys[name][1], self.vocab_size)
                 for name, (table, bonus) in self.bonuses.items() if table is not None and keys[name][0]]
        if not found:
            return scores
        row_of, next_ids, weights = (torch.cat(part).to(scores.device) for part in zip(*found))
        bonus = torch.zeros_like(scores).index_put_((row_of, next_ids), weights.to(scores.dtype), accumulate=True)
        return scores + bonus


def quote_open_after(is_open: bool, tokens: list[int], opening: set[int], closing: set[int]) -> bool:
    """Whether a double quote is open after `tokens`, when it was (`is_open`) before them."""
    for token in tokens:
        if token in opening:
            is_open = True
        elif token in closing:
            is_open = False
    return is_open


def followers(table: torch.LongTensor, keys: list[int], weight: float, rows: list[int], vocab_size: int):
    """(row ids, next-word ids, weights) of the words stored under each row's key in a sorted
    table of key * vocab_size + next ids: one search for all rows, no loop over them."""
    keys = torch.tensor(keys, dtype=torch.long)
    lo = torch.searchsorted(table, keys * vocab_size)
    counts = torch.searchsorted(table, (keys + 1) * vocab_size) - lo
    row_of = torch.repeat_interleave(torch.tensor(rows, dtype=torch.long), counts)
    # each entry's index in the table: its row's lo plus its place among that row's entries
    first = torch.repeat_interleave(lo - (counts.cumsum(0) - counts), counts)
    entries = table[first + torch.arange(len(row_of))]
    next_ids = entries - torch.repeat_interleave(keys, counts) * vocab_size
    return row_of, next_ids, torch.full((len(row_of),), weight)


def load_ngrams(folder) -> dict | None:
    """The n-gram table saved beside a model (`save_ngrams`), or None when there is none."""
    path = Path(folder, NGRAMS_FILE)
    return torch.load(path) if path.is_file() else None


def save_ngrams(folder, table: dict) -> None:
    replace_atomically(Path(folder, NGRAMS_FILE), lambda temporary: torch.save(table, temporary))


def ngram_table(tokenizer, stories, min_count: int = 1) -> dict:
    """{"bigrams", "trigrams", "marks"}: sorted int64 tensors of the word bigrams (a * V + b) and
    trigrams ((a * V + b) * V + c) of `stories` (V = vocabulary size), marks between words skipped,
    and of the marks that follow two tokens ((a * V + b) * V + mark: `mom said ,`, `said , "`), each
    occurring at least `min_count` times; none spans stories. For WritingPrior's bonuses."""
    tables = tables_for(tokenizer)
    is_word, is_mark = tables.is_word.tolist(), (tables.is_mark | tables.is_quote).tolist()
    size = tables.size
    counts = {2: Counter(), 3: Counter(), "marks": Counter()}
    unk = tokenizer.unk_token_id
    stories = list(stories)
    for start in range(0, len(stories), 1000):
        # the Rust tokenizer itself: no warning about stories longer than the model's context
        batch = tokenizer.backend_tokenizer.encode_batch(stories[start:start + 1000], add_special_tokens=False)
        for ids in (encoding.ids for encoding in batch):
            words = [t for t in ids if is_word[t] and t != unk]
            counts[2].update(a * size + b for a, b in zip(words, words[1:]))
            counts[3].update((a * size + b) * size + c for a, b, c in zip(words, words[1:], words[2:]))
            counts["marks"].update((a * size + b) * size + c for a, b, c in zip(ids, ids[1:], ids[2:])
                                   if is_mark[c] and unk not in (a, b))
    return {name: torch.tensor(sorted(k for k, c in counts[n].items() if c >= min_count), dtype=torch.long)
            for name, n in (("bigrams", 2), ("trigrams", 3), ("marks", "marks"))}
