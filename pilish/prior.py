"""The writing prior: rules over the whole text, and the mix with the training data's n-gram model.

`WritingPrior` is a LogitsProcessor that sees the whole text so far, not just the window the model
reads, so its rules survive the sliding window of a long text: no word twice in a row ("a a"), no
word n-gram the text already has, a double quote that opens only when none is open. Before them it
mixes the model's distribution with the training stories' n-gram model (pilish/ngram.py), after
each row's last two tokens: P ~ P_model^(1 - w) P_ngram^w, a weight tuned on held-out perplexity
(bench/ngram_mix.py).

Then the sentence ends (. ! ?). Blind readers of Pilish chose the passage with more short, complete
sentences, and marked down sentences that stop mid-way ("he noticed something shiny everything.").
So a sentence may end only after two tokens that end one somewhere in the training stories ("she
smiled." yes, "and the." no: the n-gram model's trigrams say which), and each such end gains a bonus in
log-probability, so that the text ends its sentences where real stories do, and often
(BENCHMARKS.md, "Blind reading" 2026-12-05). Last, a token the stories never put after the row's
last token ("remembered wanted") pays a fixed cost in log-probability: readers marked such joins down,
and the mix alone lets the model's share carry them.
"""

from __future__ import annotations

from typing import Iterable

import torch
from transformers import LogitsProcessor

from pilish.ngram import NgramModel


class WritingPrior(LogitsProcessor):
    """The mix and the rules above, for every row at each step.

    Words are the word tokens (marks in between are skipped, as a reader skips them); the n-gram
    model reads every token. Bans set a score to -inf; put this processor before
    PilishLogitsProcessor, whose mask comes last and which rescues a row whose allowed words were all banned.
    """

    def __init__(self, is_word: torch.BoolTensor, no_repeat_words: int = 0, no_immediate_repeat: bool = False,
                 ngram_model: NgramModel | None = None, ngram_weight: float = 0.0,
                 quotes: tuple[Iterable[int], Iterable[int]] = ((), ()), sentence_ends: Iterable[int] = (),
                 real_sentence_ends: bool = False, sentence_bonus: float = 0.0, unseen_pair_cost: float = 0.0):
        self.is_word = is_word.tolist()
        self.vocab_size = len(self.is_word)
        self.no_repeat_words = no_repeat_words
        self.no_immediate_repeat = no_immediate_repeat
        self.ngram_model = ngram_model if ngram_weight else None
        self.ngram_weight = ngram_weight
        # sentence_ends = the ids of . ! ?: with real_sentence_ends (and the mix on), each may follow
        # only two tokens it follows in the training stories, and each such end gains sentence_bonus
        self.sentence_ends = torch.tensor(sorted(set(sentence_ends)), dtype=torch.long)
        self.sentence_bonus = sentence_bonus
        self.unseen_pair_cost = unseen_pair_cost  # taken from a token the stories never put after the last one
        self.real_ends = None  # sorted keys (a * V + b) * V + end of the trigrams "a b ." the stories have
        if real_sentence_ends and self.ngram_model is not None:
            keys, size = self.ngram_model.trigrams.keys, self.ngram_model.vocab_size
            self.real_ends = keys[torch.isin(keys % size, self.sentence_ends)]
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

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = input_ids[:, self.prompt_length:].tolist()
        if self.ngram_model is not None:
            contexts = self.ngram_model.contexts([self.last_tokens + ids for ids in rows])
            probs, seen = self.ngram_model.probs_and_seen(contexts, seen=bool(self.unseen_pair_cost))
            scores = mix(scores, probs.to(scores.device), self.ngram_weight)
            if seen is not None:
                size = self.ngram_model.vocab_size
                seen = seen.to(scores.device)
                scores[:, :size] = torch.where(seen, scores[:, :size], scores[:, :size] - self.unseen_pair_cost)
            if self.real_ends is not None:
                scores = keep_real_ends(scores, contexts, self.sentence_ends, self.real_ends,
                                        self.ngram_model.vocab_size)
                if self.sentence_bonus:  # only real ends: anywhere, it ends sentences at "the other." and "one."
                    ends = self.sentence_ends.to(scores.device)
                    scores[:, ends] += self.sentence_bonus  # -inf (banned) stays -inf
        banned_rows, banned_ids = [], []
        for row, ids in enumerate(rows):
            new_words = self._words(ids)
            words = self.history[-max(self.no_repeat_words, 1):] + new_words  # enough words for every rule
            banned = self._banned(ids, new_words, words)
            banned_rows += [row] * len(banned)
            banned_ids += banned
        if banned_ids:
            scores[banned_rows, banned_ids] = float("-inf")
        return scores


def mix(scores: torch.FloatTensor, ngram_probs: torch.FloatTensor, weight: float) -> torch.FloatTensor:
    """The log-linear mix P ~ P_model^(1 - weight) P_ngram^weight, as normalized log-probabilities: the
    model's distribution (softmax of `scores`, logits or log-probabilities) and the n-gram model's
    ([rows, V]; columns beyond V, a padded model vocabulary, are never chosen). A product, not a sum:
    a word needs both models' support, so neither can carry a word the other finds absurd. A score
    of -inf (banned by an earlier rule) stays -inf."""
    ngram_part = ngram_probs.log().mul_(weight)
    if ngram_part.shape[-1] < scores.shape[-1]:
        ngram_part = torch.nn.functional.pad(ngram_part, (0, scores.shape[-1] - ngram_part.shape[-1]),
                                             value=float("-inf"))
    mixed = scores.float().log_softmax(dim=-1).mul_(1 - weight).add_(ngram_part)
    mixed = mixed.masked_fill_(scores == float("-inf"), float("-inf"))
    # a row with nothing left (all banned) stays all -inf, for the Pilish mask to rescue, not NaN
    return mixed.log_softmax(dim=-1).nan_to_num(nan=float("-inf"), neginf=float("-inf")).to(scores.dtype)


def keep_real_ends(scores: torch.FloatTensor, contexts: torch.LongTensor, ends: torch.LongTensor,
                   real_ends: torch.LongTensor, vocab_size: int) -> torch.FloatTensor:
    """`scores` with each of `ends` (the ids of . ! ?) set to -inf in the rows whose last two tokens
    (`contexts`, [rows, 2]) never precede it in the stories: `real_ends` holds the sorted keys
    (a * V + b) * V + end of the trigrams that do."""
    wanted = ((contexts[:, 0] * vocab_size + contexts[:, 1]) * vocab_size)[:, None] + ends[None]
    place = torch.searchsorted(real_ends, wanted).clamp(max=max(len(real_ends) - 1, 0))
    seen = real_ends[place] == wanted if len(real_ends) else torch.zeros_like(wanted, dtype=torch.bool)
    ends = ends.to(scores.device)
    scores[:, ends] = torch.where(seen.to(scores.device), scores[:, ends], float("-inf"))
    return scores


def quote_open_after(is_open: bool, tokens: list[int], opening: set[int], closing: set[int]) -> bool:
    """Whether a double quote is open after `tokens`, when it was (`is_open`) before them."""
    for token in tokens:
        if token in opening:
            is_open = True
        elif token in closing:
            is_open = False
    return is_open
