"""A token trigram language model with interpolated modified Kneser-Ney smoothing (Chen & Goodman, 1998).

It models the same tokens the neural model does (words and marks, by id), so the two can be mixed
token by token: `NgramModel.probs` gives, for a batch of contexts (each row's last two tokens), the
whole distribution over the vocabulary at once, from sorted int64 keys and a few searches; no loop
over rows or words. Every story is read as <|endoftext|> <|endoftext|> story <|endoftext|>: the
model predicts a story's first word and its end, as the neural model does after <|endoftext|>.

Smoothing, per order: P3(c | a b) = (n(a b c) - D(n)) / n(a b .) + g(a b) P2(c | b), where n counts
the trigrams; P2 does the same over continuation counts (how many different tokens precede `b c`),
P1 over how many precede `c`, and P1 backs off to the uniform distribution. D(n) is D1, D2 or D3+ for
a count of 1, 2 or more (estimated from how many n-grams occur once, twice...), and g(h), the
discount mass the context freed, makes each distribution sum to 1. An unseen context backs off whole.

Why not a library: kenlm needs compiling and scores one word at a time (a Pilish step needs the whole
vocabulary for 8 rows); nltk.lm is pure Python, dictionary lookups per word.

train_model.py saves the model beside the neural one as NGRAMS_FILE (`save_ngram_model`);
`load_ngram_model` reads it back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable

import torch

from lmkit.files import replace_atomically

NGRAMS_FILE = "ngrams.pt"  # in a model folder: the training stories' Kneser-Ney trigram model
FALLBACK_DISCOUNT = 0.75  # Kneser and Ney's own single discount, for counts too few to estimate three
REBUILD_HINT = ("delete it and run the same train_model.py command again: it trains no further and writes a "
                "new one")


@dataclass(frozen=True)
class Level:
    """One order of the model. Entries are sorted keys context * V + next with their discounted share
    (n - D(n)) / n(context .); contexts are sorted keys with their back-off weight g."""

    keys: torch.LongTensor
    shares: torch.FloatTensor
    contexts: torch.LongTensor
    backoff: torch.FloatTensor

    def apply(self, lower: torch.FloatTensor, contexts: torch.LongTensor, vocab_size: int,
              entries: tuple[torch.LongTensor, torch.LongTensor] | None = None) -> torch.FloatTensor:
        """[rows, V]: this order's distribution after each row's context, given the lower order's
        (`entries`: `self.entries(contexts, vocab_size)`, if the caller has them already)."""
        place = torch.searchsorted(self.contexts, contexts).clamp(max=len(self.contexts) - 1)
        seen = self.contexts[place] == contexts
        weight = torch.where(seen, self.backoff[place], 1.0)  # an unseen context backs off whole
        probs = lower * weight[:, None]
        rows, entries = entries if entries is not None else self.entries(contexts, vocab_size)
        return probs.index_put_((rows, self.keys[entries] % vocab_size), self.shares[entries], accumulate=True)

    def entries(self, contexts: torch.LongTensor, vocab_size: int) -> tuple[torch.LongTensor, torch.LongTensor]:
        """(row, entry index) of every entry that continues each row's context, with no loop over rows."""
        first = torch.searchsorted(self.keys, contexts * vocab_size)
        counts = torch.searchsorted(self.keys, (contexts + 1) * vocab_size) - first
        rows = torch.repeat_interleave(torch.arange(len(contexts)), counts)
        # each entry's index: its row's first entry plus its place among that row's entries
        return rows, torch.repeat_interleave(first - (counts.cumsum(0) - counts), counts) + torch.arange(len(rows))


@dataclass(frozen=True)
class NgramModel:
    """P(next token | last two tokens) over a vocabulary of `vocab_size` ids; `boundary_id`
    (<|endoftext|>) stands before a story and after it, and pads a context shorter than two tokens."""

    vocab_size: int
    boundary_id: int
    unigrams: torch.FloatTensor  # [V]: P1
    bigrams: Level
    trigrams: Level

    def contexts(self, tokens: list[list[int]]) -> torch.LongTensor:
        """[rows, 2]: the last two tokens of each row, padded on the left with `boundary_id`."""
        return torch.tensor([([self.boundary_id] * 2 + row)[-2:] for row in tokens], dtype=torch.long)

    def probs(self, contexts: torch.LongTensor) -> torch.FloatTensor:
        """[rows, V]: the distribution of the next token after each row's two tokens ([rows, 2])."""
        return self.probs_and_seen(contexts, seen=False)[0]

    def probs_and_seen(self, contexts: torch.LongTensor, seen: bool = True) -> tuple[torch.FloatTensor, torch.BoolTensor | None]:
        """(`probs(contexts)`; with `seen`, [rows, V]: which tokens follow each row's last token somewhere
        in the stories, read from the same bigram entries: a pair is there if any story has it)."""
        size = self.vocab_size
        probs = self.unigrams.expand(len(contexts), size).clone()
        last = contexts[:, 1].contiguous()
        rows, entries = self.bigrams.entries(last, size)
        probs = self.bigrams.apply(probs, last, size, (rows, entries))
        followers = None
        if seen:
            followers = torch.zeros(len(contexts), size, dtype=torch.bool)
            followers[rows, self.bigrams.keys[entries] % size] = True
        return self.trigrams.apply(probs, contexts[:, 0] * size + contexts[:, 1], size), followers

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The model as a flat dict of tensors (what `save_ngram_model` writes)."""
        flat = {"vocab_size": torch.tensor(self.vocab_size), "boundary_id": torch.tensor(self.boundary_id),
                "unigrams": self.unigrams}
        for name in ("bigrams", "trigrams"):
            flat |= {f"{name}.{item.name}": getattr(getattr(self, name), item.name) for item in fields(Level)}
        return flat

    @classmethod
    def from_dict(cls, flat: dict) -> NgramModel:
        """The model `to_dict` flattened; a ValueError for anything else (e.g. the flat n-gram
        tables that NGRAMS_FILE held before this model)."""
        if "unigrams" not in flat:
            raise ValueError("it holds no Kneser-Ney model (it was written by an older version of the kit)")
        levels = {name: Level(*(flat[f"{name}.{item.name}"] for item in fields(Level)))
                  for name in ("bigrams", "trigrams")}
        return cls(int(flat["vocab_size"]), int(flat["boundary_id"]), flat["unigrams"], **levels)


def estimate_discounts(counts: torch.LongTensor) -> tuple[float, float, float]:
    """(D1, D2, D3+) from how many of `counts` are 1, 2, 3 and 4 (n1..n4), Chen & Goodman's
    estimates: Y = n1 / (n1 + 2 n2), Dk = k - (k + 1) Y n(k+1) / nk. FALLBACK_DISCOUNT for all three
    when some nk is 0 or an estimate falls outside (0, k] (a tiny corpus, or one repeated)."""
    n1, n2, n3, n4 = (int((counts == k).sum()) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return (FALLBACK_DISCOUNT,) * 3
    y = n1 / (n1 + 2 * n2)
    found = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return found if all(0 < d <= k for k, d in enumerate(found, start=1)) else (FALLBACK_DISCOUNT,) * 3


def discounted_level(keys: torch.LongTensor, counts: torch.LongTensor, vocab_size: int,
                     discounts: tuple[float, float, float]) -> Level:
    """The Level of n-grams `keys` (sorted, unique: context * V + next) seen `counts` times."""
    discount = torch.tensor([0.0, *discounts], dtype=torch.double)[counts.clamp(max=3)]
    contexts, inverse = torch.unique_consecutive(keys // vocab_size, return_inverse=True)
    totals = torch.zeros(len(contexts), dtype=torch.double).index_add_(0, inverse, counts.double())
    freed = torch.zeros(len(contexts), dtype=torch.double).index_add_(0, inverse, discount)
    shares = (counts - discount) / totals[inverse]
    return Level(keys, shares.float(), contexts, (freed / totals).float())


def build_ngram_model(stories: Iterable[list[int]], vocab_size: int, boundary_id: int,
                      discounts: tuple[float, float, float] | None = None) -> NgramModel:
    """The Kneser-Ney trigram model of `stories` (token id lists). `discounts` (D1, D2, D3+) for
    every order; None estimates each order's from its counts (`estimate_discounts`)."""
    streams = [[boundary_id, boundary_id, *story, boundary_id] for story in stories]
    if not streams:
        raise ValueError("no stories to count n-grams in")
    tokens = torch.tensor(list(itertools.chain.from_iterable(streams)), dtype=torch.long)
    size = vocab_size
    keys = (tokens[:-2] * size + tokens[1:-1]) * size + tokens[2:]
    # a trigram starts at every token but a story's last two (no trigram spans two stories)
    ends = torch.tensor([len(stream) for stream in streams], dtype=torch.long).cumsum(0)
    inside = torch.ones(len(tokens), dtype=torch.bool)
    inside[ends - 1], inside[ends - 2] = False, False
    trigrams, trigram_counts = torch.unique(keys[inside[:-2]], return_counts=True)
    # lower orders count continuations: the different tokens seen before `b c`, before `c`
    bigrams, bigram_counts = torch.unique(trigrams % size ** 2, return_counts=True)
    continuations = torch.zeros(size, dtype=torch.long).index_add_(
        0, bigrams % size, torch.ones_like(bigrams))
    levels = [discounted_level(trigrams, trigram_counts, size, discounts or estimate_discounts(trigram_counts)),
              discounted_level(bigrams, bigram_counts, size, discounts or estimate_discounts(bigram_counts))]
    unigram = discounted_level(torch.arange(size)[continuations > 0], continuations[continuations > 0], size,
                               discounts or estimate_discounts(continuations[continuations > 0]))
    unigrams = torch.full((size,), float(unigram.backoff.sum()) / size)  # the freed mass, spread evenly
    unigrams[unigram.keys] += unigram.shares
    return NgramModel(size, boundary_id, unigrams, bigrams=levels[1], trigrams=levels[0])


def ngram_model(tokenizer, stories: Iterable[str]) -> NgramModel:
    """The Kneser-Ney trigram model of `stories` (texts) under `tokenizer`'s ids."""
    stories = list(stories)
    ids = []
    for start in range(0, len(stories), 1000):
        # the Rust tokenizer itself: no warning about stories longer than the model's context
        batch = tokenizer.backend_tokenizer.encode_batch(stories[start:start + 1000], add_special_tokens=False)
        ids += [encoding.ids for encoding in batch]
    return build_ngram_model(ids, len(tokenizer), tokenizer.eos_token_id)


def save_ngram_model(folder, model: NgramModel) -> None:
    replace_atomically(Path(folder, NGRAMS_FILE), lambda temporary: torch.save(model.to_dict(), temporary))


def load_ngram_model(folder) -> NgramModel | None:
    """The model saved beside a neural model (`save_ngram_model`), or None when there is none; a
    ValueError that says how to rebuild it when the file is from an older version."""
    path = Path(folder, NGRAMS_FILE)
    if not path.is_file():
        return None
    try:
        table = torch.load(path)
    except Exception as error:  # a cut-short or foreign file: torch raises RuntimeError, EOFError, pickle's errors
        raise ValueError(f"{path} is damaged ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
                         f"{REBUILD_HINT}") from None
    try:
        return NgramModel.from_dict(table)
    except ValueError as error:
        raise ValueError(f"{path}: {error}; {REBUILD_HINT}") from None
