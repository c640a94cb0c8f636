"""The constraint: a LogitsProcessor that lets a model write only Pilish, and the stopping criteria
that end a row once its digits are spelled.

It holds the shared vocabulary tables (pilish/vocabulary.py), the digit plan (pilish/plan.py) and
the state of the rows (where the generated part starts, how many digits came before it); each step
is a few gathers from those tables.
"""

from __future__ import annotations

from typing import Iterable

import torch
from transformers import LogitsProcessor, StoppingCriteria

from pilish.plan import DigitPlan
from pilish.rules import PilishError
from pilish.tokens import OTHER
from pilish.vocabulary import VocabularyTables, vocabulary_tables

# Score given to a row's allowed tokens when an earlier processor (e.g. no_repeat_ngram_size) had set
# all of them to -inf. Finite so sampling still works and the beam keeps a usable (if poor) score;
# well above the -1e9 that beam search uses for "no hypothesis yet", so such beams can still finish.
FALLBACK_SCORE = -1.0e4


class PilishLogitsProcessor(LogitsProcessor):
    """Masks every token that would break the Pilish, so `model.generate` can only write Pilish.

    At each step a row may take a word whose length spells the next digit (or, under the standard
    rules, the next two digits), but only if the rest of the digits can still be spelled afterwards.
    Punctuation may come between words (never first; a quote only after another mark, any other
    mark after a word). Once all digits are spelled a row may only take a closing mark (. ! ?) or
    one of `end_ids`.

    The state of a row (how many digits it has spelled) is recomputed from `input_ids` at every
    call, so the processor is correct under beam search, whose rows are reordered between steps.
    The model's vocabulary must be at least `len(vocab)` wide; ids beyond `vocab` are never allowed.

    Pass `eos_token_id` (and `pad_token_id`) to `generate`, so rows that finish early are padded,
    and use `PilishStoppingCriteria` so rows stop once they are done.
    """

    def __init__(self, vocab: list[str] | VocabularyTables, digits: str, rules: str = "basic",
                 prompt_length: int = 0, start_digit: int | torch.LongTensor = 0, allow_punctuation: bool = True,
                 punctuation_lookahead: bool = True, banned_ids: Iterable[int] = (), end_ids: Iterable[int] = ()):
        tables = vocab if isinstance(vocab, VocabularyTables) else \
            vocabulary_tables(tuple(vocab), tuple(banned_ids), tuple(end_ids))
        self.allow_punctuation = allow_punctuation
        self.punctuation_lookahead = punctuation_lookahead
        # What may follow each kind of token (WORD, MARK, OTHER): a mark after a word, a quote only
        # after a mark (`said, "go!" she`, as the stories write dialogue), nothing after anything else.
        self.punctuation_after = torch.stack(
            [tables.is_mark, tables.is_quote, torch.zeros_like(tables.is_mark)]) & allow_punctuation
        # What a row may take once all digits are spelled: the last row of ids_with_length
        closing = (tables.is_closing & allow_punctuation) | tables.is_end
        self.has_closing = bool(closing.any())
        self.ids_with_length = torch.cat([tables.ids_with_length, closing[None]])
        self.digits_spelled = tables.digits_spelled(rules)
        self.tables = tables
        self.plan = DigitPlan.build(digits, rules, tables.available_lengths(), done_row=len(self.ids_with_length) - 1)
        self.start_digit = torch.zeros((), dtype=torch.long)
        self.restart(prompt_length, start_digit)

    @property
    def digits(self) -> str:
        return self.plan.digits

    @property
    def vocab_size(self) -> int:
        return self.tables.size

    def restart(self, prompt_length: int, start_digit: int | torch.LongTensor) -> None:
        """Continue from a new prompt: the caller slid the context window, so the generated part now
        starts at `prompt_length` and `start_digit` digits were spelled before it."""
        self.plan.check_start(start_digit)
        self.prompt_length = prompt_length
        self.start_digit = torch.as_tensor(start_digit, dtype=torch.long, device=self.start_digit.device)

    def _to(self, device: torch.device) -> None:
        """Move the tables to the device the model runs on (once)."""
        if self.ids_with_length.device != device:
            self.tables, self.plan = self.tables.to(device), self.plan.to(device)
            self.punctuation_after, self.ids_with_length, self.digits_spelled, self.start_digit = (
                tensor.to(device) for tensor in
                (self.punctuation_after, self.ids_with_length, self.digits_spelled, self.start_digit))

    def digits_in(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """[rows, length]: digits each token spells (ids outside the vocabulary spell none)."""
        self._to(input_ids.device)
        inside = input_ids < self.vocab_size
        return self.digits_spelled[input_ids.clamp(0, self.vocab_size - 1)] * inside

    def _starts(self, rows: int) -> torch.LongTensor:
        """start_digit for each row. A per-prompt tensor is repeated for each beam or returned
        sequence: generate() expands rows with repeat_interleave, so a prompt's copies are adjacent."""
        start = self.start_digit.flatten()
        if start.numel() == 1:
            return start.expand(rows)
        if rows % start.numel() != 0:
            raise ValueError(f"start_digit has {start.numel()} entries, which does not divide {rows} rows")
        return start.repeat_interleave(rows // start.numel())

    def positions(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """[rows]: digits spelled so far by each row (start_digit + what it generated)."""
        spelled = self.digits_in(input_ids[:, self.prompt_length :]).sum(dim=1)
        return self._starts(input_ids.shape[0]) + spelled

    def done(self, input_ids: torch.LongTensor) -> torch.BoolTensor:
        """[rows]: whether each row has spelled all the digits."""
        return self.positions(input_ids) >= len(self.plan)

    def allowed(self, input_ids: torch.LongTensor) -> torch.BoolTensor:
        """[rows, len(vocab)]: which tokens each row may take next (a few gathers, no loop over tokens)."""
        n = len(self.plan)
        position = self.positions(input_ids).clamp(0, n)
        kind = self.tables.kind[input_ids[:, -1].clamp(0, self.vocab_size - 1)]
        kind = kind.masked_fill((position == 0) | (position == n), OTHER)  # no mark first, nor after the end
        return (
            self.ids_with_length[self.plan.one_digit_length[position]]
            | self.ids_with_length[self.plan.two_digit_length[position]]
            | self.punctuation_after[kind]
        )

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[-1] < self.vocab_size:
            raise PilishError(
                f"the model scores {scores.shape[-1]} tokens but the vocabulary has {self.vocab_size}; "
                "use the model trained with this tokenizer"
            )
        allowed = self.allowed(input_ids)
        if scores.shape[-1] > self.vocab_size:  # a model vocabulary padded beyond the tokenizer's
            allowed = torch.nn.functional.pad(allowed, (0, scores.shape[-1] - self.vocab_size), value=False)
        masked = torch.where(allowed, scores, float("-inf"))
        if self.allow_punctuation and self.punctuation_lookahead:
            masked = charge_punctuation(scores, allowed, masked, self.tables.is_word)
        return rescue_stuck_rows(scores, allowed, masked)


def charge_punctuation(scores, allowed, masked, is_word):
    """Make a mark pay for the word it puts off.

    Masking alone over-rewards punctuation: when the words of the needed length are unlikely,
    a comma or a quote takes most of the renormalized probability, yet the word is still owed
    right after it. A one-step look-ahead fixes that: a mark's score gains log W, the probability
    the model gives the allowed words now, as an estimate of what the owed word will cost later.
    """
    is_word = torch.nn.functional.pad(is_word, (0, scores.shape[-1] - len(is_word)), value=False)
    log_probs = scores.float().log_softmax(dim=-1)
    word_mass = torch.where(allowed & is_word, log_probs, float("-inf")).logsumexp(dim=-1, keepdim=True)
    owes_a_word = allowed & ~is_word & (word_mass > float("-inf"))  # not at the end: nothing owed
    return torch.where(owes_a_word, masked + word_mass.to(masked.dtype), masked)


def rescue_stuck_rows(scores, allowed, masked):
    """An earlier processor (no_repeat_ngram_size, repetition rules...) may have set every allowed
    token to -inf; give them a finite low score so the row still has something to choose.
    (Computed for every row, not under `if stuck.any()`, to avoid a device sync per step.)"""
    stuck = (masked.amax(dim=1) == float("-inf"))[:, None]
    rescued = torch.full_like(scores, float("-inf")).masked_fill(allowed, FALLBACK_SCORE)
    # A row with nothing allowed at all (an impossible beam, or a finished row when no closing
    # token exists) keeps its scores: all -inf would break sampling.
    rescued = torch.where(allowed.any(dim=1, keepdim=True), rescued, scores)
    return torch.where(stuck, rescued, masked)


class PilishStoppingCriteria(StoppingCriteria):
    """Stops each row once it has spelled all digits and, when punctuation is on, has taken its
    closing mark (or end token) too."""

    def __init__(self, processor: PilishLogitsProcessor):
        self.processor = processor

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        done = self.processor.done(input_ids)
        if not self.processor.allow_punctuation or not self.processor.has_closing:
            return done
        last_token_is_word = self.processor.digits_in(input_ids[:, -1:]).squeeze(1) > 0
        return done & ~last_token_is_word
