"""Pilish: English whose word lengths spell the digits of a number such as pi.

"How I need a drink, alcoholic ..." spells 3 1 4 1 5 9 ... : each word's letter count is the next
digit, and a 10-letter word stands for 0. Under the "standard" rules a word of more than 10 letters
stands for two digits (a 12-letter word spells "12").

This module holds everything Pilish-specific:
  * counting letters, the two rule sets, and the digit sources (pi, e, phi, sqrt2 or literal digits);
  * `verify`, which checks any text against a digit string and says where it departs;
  * `check_spellable`, which tells the user early when a vocabulary cannot spell the digits;
  * `PilishLogitsProcessor` and `PilishStoppingCriteria`, which make `model.generate` write only
    Pilish by masking, at every step, all tokens whose length is not the next digit.

Tokens are whole words or single punctuation marks, so "the length of the next word" is simply
"the letters in the next token", and masking is a table lookup per step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import mpmath
import torch
from transformers import LogitsProcessor, StoppingCriteria

from common import UserError

RULES = ("basic", "standard")
NAMED_DIGITS = ("pi", "e", "phi", "sqrt2")

# Punctuation the generator may put between words. Anything else made of no letters (digits,
# symbols, special tokens) would either read oddly or confuse the verifier, so it is never offered.
PUNCTUATION = ".,!?;:\"'"
# The marks a finished text may end on.
CLOSING_MARKS = (".", "!", "?")

# A word in free text: letters, possibly joined by apostrophes or hyphens ("don't", "well-known").
# [^\W\d_] is "a word character that is neither a digit nor an underscore", i.e. a letter.
WORD_RE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")

# Quotes stand only after another mark (`said, "go!" she`), the way the stories write dialogue;
# every other mark follows a word. So at most two marks stand between words and a text of n digits
# has at most about 3n tokens.
QUOTES = "\"'"

# Kinds of token, for what punctuation may follow them.
WORD, MARK, OTHER = 0, 1, 2

# Score given to a row's allowed tokens when an earlier processor (e.g. no_repeat_ngram_size) had set
# all of them to -inf. Finite so sampling still works and the beam keeps a usable (if poor) score;
# well above the -1e9 that beam search uses for "no hypothesis yet", so such beams can still finish.
FALLBACK_SCORE = -1.0e4


# ----------------------------------------------------------------------------------------------
# Letters and rules


def letters_in(word: str) -> int:
    """Number of letters in `word`; apostrophes, hyphens, digits and punctuation count 0."""
    return sum(1 for char in word if char.isalpha())


def _check_rules(rules: str) -> None:
    if rules not in RULES:
        raise UserError(f'unknown Pilish rules "{rules}": use one of {", ".join(RULES)}')


def digits_of_word(n_letters: int, rules: str) -> str | None:
    """The digits a word of `n_letters` letters spells, or None if the rules cannot use it.

    Both rules: 1..9 letters spell that digit, 10 letters spell "0", no letters spell nothing.
    basic: longer words cannot be used. standard: they spell their length ("12" for 12 letters).
    """
    _check_rules(rules)
    if n_letters <= 0:
        return ""
    if n_letters < 10:
        return str(n_letters)
    if n_letters == 10:
        return "0"
    return str(n_letters) if rules == "standard" else None


def _one_digit_length(digit: str) -> int:
    """Letters a single-digit word needs to spell `digit` (0 is spelled by 10 letters)."""
    return 10 if digit == "0" else int(digit)


def _two_digit_length(digits: str, position: int) -> int | None:
    """Letters of the long word that would spell digits[position:position+2] under the standard
    rules, or None when there is no such word (fewer than two digits left, or the pair is below 11,
    which single-digit words spell instead)."""
    if position + 1 >= len(digits):
        return None
    length = int(digits[position : position + 2])
    return length if length >= 11 else None


def _moves(digits: str, rules: str, position: int) -> list[tuple[int, int]]:
    """The (word length, position after the word) pairs that may spell digits from `position`."""
    moves = [(_one_digit_length(digits[position]), position + 1)]
    if rules == "standard":
        long_length = _two_digit_length(digits, position)
        if long_length is not None:
            moves.append((long_length, position + 2))
    return moves


def _can_finish(digits: str, rules: str, available_lengths: set[int]) -> list[bool]:
    """can_finish[p]: the digits from position p to the end can be spelled with words of the
    available lengths. Computed backwards, so the generator never walks into a dead end."""
    can_finish = [False] * (len(digits) + 1)
    can_finish[len(digits)] = True
    for position in range(len(digits) - 1, -1, -1):
        can_finish[position] = any(
            length in available_lengths and can_finish[after]
            for length, after in _moves(digits, rules, position)
        )
    return can_finish


# ----------------------------------------------------------------------------------------------
# Digit sources


def _check_digit_string(digits: str, what: str) -> None:
    if not isinstance(digits, str) or not re.fullmatch(r"[0-9]+", digits):
        raise UserError(f"{what} must be a non-empty string of the digits 0-9, got {digits!r}")


@lru_cache(maxsize=16)
def _named_digits(source: str, n: int) -> str:
    constants = {
        "pi": lambda: mpmath.mp.pi,
        "e": lambda: mpmath.mp.e,
        "phi": lambda: mpmath.mp.phi,
        "sqrt2": lambda: mpmath.sqrt(2),
    }
    # Guard digits: we print 30 digits more than asked and cut them off, so rounding at the last
    # printed digit cannot reach digit n (unless 30 nines follow it, which does not happen here).
    guard = 30
    with mpmath.workdps(n + guard):
        # Every named constant lies in [1, 10): the text is "d.ddd..." with no exponent.
        text = mpmath.nstr(constants[source](), n + guard, strip_zeros=False)
    return text.replace(".", "")[:n]


def get_digits(source: str, n: int) -> str:
    """The first `n` digits of `source`, decimal point removed ("pi" -> "31415926535...").

    `source` is one of NAMED_DIGITS or a literal string of digits (returned truncated to n).
    """
    if not isinstance(n, int) or n < 1:
        raise UserError(f"the number of digits must be a whole number of at least 1, got {n!r}")
    name = source.strip().lower() if isinstance(source, str) else source
    if name in NAMED_DIGITS:
        return _named_digits(name, n)
    if isinstance(source, str) and re.fullmatch(r"[0-9]+", source):
        return source[:n]
    raise UserError(
        f"unknown digit source {source!r}: use one of {', '.join(NAMED_DIGITS)} "
        "or a literal string of digits such as 1234"
    )


# ----------------------------------------------------------------------------------------------
# Verifier


@dataclass
class Verification:
    """How well a text spells a digit string."""

    matched: int  # digits spelled correctly before the first departure (or all of them)
    total: int  # len(digits)
    ok: bool  # all digits spelled and no words after them
    departure: str | None  # human sentence saying where the text departs; None when ok
    departed: bool = False  # a word broke the digits (not merely: the text ended early)


def verify(text: str, digits: str, rules: str) -> Verification:
    """Check that the words of `text` spell exactly `digits` under `rules`.

    Words are found with WORD_RE, so punctuation is ignored and "don't" is one 4-letter word.
    """
    _check_rules(rules)
    total = len(digits)
    position = 0  # digits spelled so far
    words = (word for word in WORD_RE.findall(text) if letters_in(word) > 0)
    for number, word in enumerate(words, start=1):
        n_letters = letters_in(word)
        if position == total:
            extra = 1 + sum(1 for _ in words)
            plural = "s" if extra > 1 else ""
            departure = (
                f'{extra} extra word{plural} after all {total} digits, starting with word {number} "{word}"'
            )
            return Verification(position, total, False, departure, departed=True)
        spelled = digits_of_word(n_letters, rules)
        if spelled is None:
            departure = (
                f'word {number} "{word}" has {n_letters} letters, more than the basic rules allow (10); '
                f"digit {position + 1} of the sequence is {digits[position]}"
            )
            return Verification(position, total, False, departure, departed=True)
        wanted = digits[position : position + len(spelled)]
        if wanted != spelled:
            if len(wanted) < len(spelled):
                what_is_there = f"only {len(wanted)} digit is left ({wanted})"
            elif len(wanted) == 1:
                what_is_there = f"digit {position + 1} of the sequence is {wanted}"
            else:
                what_is_there = f"digits {position + 1}-{position + len(wanted)} of the sequence are {wanted}"
            departure = f'word {number} "{word}" has {n_letters} letters but {what_is_there}'
            return Verification(position, total, False, departure, departed=True)
        position += len(spelled)
    if position < total:
        return Verification(position, total, False, f"text ends after {position} of {total} digits")
    return Verification(position, total, True, None)


def format_verification(verification: Verification, name: str) -> str:
    """One line: '✓ 32/32 digits of pi' or '✗ 12/32 digits of pi: <where it departs>'."""
    counts = f"{verification.matched}/{verification.total} digits of {name}"
    if verification.ok:
        return f"✓ {counts}"
    return f"✗ {counts}: {verification.departure}"


# ----------------------------------------------------------------------------------------------
# Can the vocabulary spell the digits at all?


def _or_list(numbers: list[int]) -> str:
    words = [str(number) for number in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _missing_lengths(available_lengths: set[int], digits: str, rules: str) -> list[int]:
    """Word lengths to add so the digits become spellable: those of the spelling that needs the
    fewest words of missing lengths (under basic there is only one spelling)."""
    n = len(digits)
    # cost[p]: fewest words of missing lengths needed to spell digits[p:]; choice[p]: first move.
    cost = [0] * (n + 1)
    choice: list[tuple[int, int]] = [(0, n)] * (n + 1)
    for position in range(n - 1, -1, -1):
        cost[position], choice[position] = min(
            (cost[after] + (length not in available_lengths), (length, after))
            for length, after in _moves(digits, rules, position)
        )
    missing, position = set(), 0
    while position < n:
        length, position = choice[position]
        if length not in available_lengths:
            missing.add(length)
    return sorted(missing)


def check_spellable(available_lengths: set[int], digits: str, rules: str) -> None:
    """Raise UserError naming the missing word lengths when no words of `available_lengths` can
    spell `digits` under `rules`."""
    _check_rules(rules)
    _check_digit_string(digits, "the digits to spell")
    available_lengths = set(available_lengths)
    if _can_finish(digits, rules, available_lengths)[0]:
        return
    missing = _missing_lengths(available_lengths, digits, rules)
    hint = ""
    if rules == "basic" and _can_finish(digits, "standard", available_lengths)[0]:
        hint = " (or use the standard rules, which can spell them with longer words)"
    letters = "letter" if missing == [1] else "letters"
    raise UserError(
        f"the vocabulary has no words of {_or_list(missing)} {letters}, which these digits need; "
        f"train the tokenizer on more text or a larger VOCAB_SIZE{hint}"
    )


# ----------------------------------------------------------------------------------------------
# Generation


def _is_word_token(token: str) -> bool:
    """A token the generator may use as a word: one WORD_RE word and nothing else, so the verifier
    sees exactly the letters the generator counted."""
    return WORD_RE.fullmatch(token) is not None and letters_in(token) > 0


def _is_punctuation_token(token: str) -> bool:
    return token != "" and all(char in PUNCTUATION for char in token)


class PilishLogitsProcessor(LogitsProcessor):
    """Masks every token that would break the Pilish, so `model.generate` can only write Pilish.

    At each step a row may take a word whose length spells the next digit (or, under the standard
    rules, the next two digits), but only if the rest of the digits can still be spelled afterwards.
    Punctuation may come between words (never first; a quote only after another mark, any other
    mark after a word). Once all digits
    are spelled a row may only take a closing mark (. ! ?) or one of `end_ids`.

    The state of a row (how many digits it has spelled) is recomputed from `input_ids` at every
    call, so the processor is correct under beam search, whose rows are reordered between steps.
    The model's vocabulary must be at least `len(vocab)` wide; ids beyond `vocab` are never allowed.

    Pass `eos_token_id` (and `pad_token_id`) to `generate`, so rows that finish early are padded,
    and use `PilishStoppingCriteria` so rows stop once they are done.
    """

    def __init__(
        self,
        vocab: list[str],
        digits: str,
        rules: str = "basic",
        prompt_length: int = 0,
        start_digit: int | torch.LongTensor = 0,
        allow_punctuation: bool = True,
        punctuation_lookahead: bool = True,
        banned_ids: Iterable[int] = (),
        end_ids: Iterable[int] = (),
    ):
        _check_rules(rules)
        _check_digit_string(digits, "the digits to spell")
        self.vocab_size = len(vocab)
        self.digits = digits
        self.rules = rules
        self.allow_punctuation = allow_punctuation
        self.punctuation_lookahead = punctuation_lookahead

        # (Ids beyond the vocabulary are never allowed anyway, so they need no marking.)
        banned = torch.zeros(self.vocab_size, dtype=torch.bool)
        banned[[i for i in banned_ids if 0 <= i < self.vocab_size]] = True
        is_end = torch.zeros(self.vocab_size, dtype=torch.bool)
        is_end[[i for i in end_ids if 0 <= i < self.vocab_size]] = True

        # Per-token facts, computed once; each step then only gathers from these tables.
        letters = torch.tensor([letters_in(token) for token in vocab], dtype=torch.long)
        is_word = torch.tensor([_is_word_token(token) for token in vocab], dtype=torch.bool) & ~banned
        is_punctuation = torch.tensor([_is_punctuation_token(token) for token in vocab], dtype=torch.bool)
        is_punctuation &= ~banned & ~is_end
        is_closing_mark = torch.tensor([token in CLOSING_MARKS for token in vocab], dtype=torch.bool)
        is_quote = is_punctuation & torch.tensor([all(c in QUOTES for c in token) for token in vocab])

        # Digits each token spells when generated: words by their length, everything else nothing.
        # (A >10-letter word under basic is never allowed; counting it as one digit keeps the
        # arithmetic defined for rows that contain one anyway, e.g. in a prompt.)
        def digits_spelled_by(n_letters: int) -> int:
            spelled = digits_of_word(n_letters, rules)
            return 1 if spelled is None else len(spelled)

        self.digits_spelled = torch.tensor(
            [digits_spelled_by(n) if word else 0 for n, word in zip(letters.tolist(), is_word.tolist())],
            dtype=torch.long,
        )
        self.is_word = is_word
        # What may follow each kind of token (WORD, MARK, OTHER): a mark after a word, a quote only
        # after a mark (`said, "go!" she`, as the stories write dialogue), nothing after anything else.
        is_mark = is_punctuation & ~is_quote
        self.token_kind = torch.full((self.vocab_size,), OTHER, dtype=torch.long)
        self.token_kind[is_word], self.token_kind[is_mark] = WORD, MARK
        self.punctuation_after = torch.stack([is_mark, is_quote, torch.zeros_like(is_mark)]) & allow_punctuation
        # What a row may take once all digits are spelled.
        closing = (is_closing_mark & ~banned & allow_punctuation) | is_end
        self.has_closing = bool(closing.any())

        # ids_with_length[L]: the word ids with L letters; row 0 is empty and means "no word"; the
        # last row holds the closing tokens, which is what the position after the last digit allows.
        max_length = max(int(letters[is_word].max()) if is_word.any() else 0, 10)
        self.ids_with_length = torch.zeros(max_length + 2, self.vocab_size, dtype=torch.bool)
        self.ids_with_length[letters[is_word], is_word.nonzero().squeeze(1)] = True
        self.ids_with_length[0] = False
        self.ids_with_length[-1] = closing

        available_lengths = set(letters[is_word].tolist())
        check_spellable(available_lengths, digits, rules)

        # For each position p, the one-digit and two-digit word lengths that may come next, or 0
        # where that move is impossible or leads to a dead end. Index len(digits) (done) is all 0.
        can_finish = _can_finish(digits, rules, available_lengths)
        n = len(digits)
        self.one_digit_length = torch.zeros(n + 1, dtype=torch.long)
        self.two_digit_length = torch.zeros(n + 1, dtype=torch.long)
        for position in range(n):
            for length, after in _moves(digits, rules, position):
                if length in available_lengths and can_finish[after]:
                    target = self.one_digit_length if after == position + 1 else self.two_digit_length
                    target[position] = length
        self.one_digit_length[n] = len(self.ids_with_length) - 1  # done: the closing tokens

        self.can_finish = can_finish
        self.start_digit = torch.zeros((), dtype=torch.long)
        self.restart(prompt_length, start_digit)

    def restart(self, prompt_length: int, start_digit: int | torch.LongTensor) -> None:
        """Continue from a new prompt: the caller slid the context window, so the generated part now
        starts at `prompt_length` and `start_digit` digits were spelled before it."""
        n = len(self.digits)
        for start in torch.as_tensor(start_digit).flatten().tolist():
            if not 0 <= start <= n or not self.can_finish[start]:
                raise UserError(
                    f"cannot continue the Pilish from digit {start} of {n}: "
                    "start from 0 or from a digit count an earlier run reached"
                )
        self.prompt_length = prompt_length
        self.start_digit = torch.as_tensor(start_digit, dtype=torch.long, device=self.start_digit.device)

    # -- state ------------------------------------------------------------------------------

    def _to(self, device: torch.device) -> None:
        """Move the lookup tables to the device the model runs on (once)."""
        if self.ids_with_length.device != device:
            for name in (
                "digits_spelled", "is_word", "token_kind", "punctuation_after",
                "ids_with_length", "one_digit_length", "two_digit_length", "start_digit",
            ):
                setattr(self, name, getattr(self, name).to(device))

    def _per_token_digits(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """[rows, length]: digits each token spells (ids outside the vocabulary spell none)."""
        self._to(input_ids.device)
        inside = input_ids < self.vocab_size
        spelled = self.digits_spelled[input_ids.clamp(0, self.vocab_size - 1)]
        return spelled * inside

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
        spelled = self._per_token_digits(input_ids[:, self.prompt_length :]).sum(dim=1)
        return self._starts(input_ids.shape[0]) + spelled

    def done(self, input_ids: torch.LongTensor) -> torch.BoolTensor:
        """[rows]: whether each row has spelled all the digits."""
        return self.positions(input_ids) >= len(self.digits)

    # -- the mask ---------------------------------------------------------------------------

    def allowed(self, input_ids: torch.LongTensor) -> torch.BoolTensor:
        """[rows, len(vocab)]: which tokens each row may take next (a few gathers, no loop over tokens)."""
        n = len(self.digits)
        position = self.positions(input_ids).clamp(0, n)
        kind = self.token_kind[input_ids[:, -1].clamp(0, self.vocab_size - 1)]
        kind = kind.masked_fill((position == 0) | (position == n), OTHER)  # no mark first, nor after the end
        return (
            self.ids_with_length[self.one_digit_length[position]]
            | self.ids_with_length[self.two_digit_length[position]]
            | self.punctuation_after[kind]
        )

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[-1] < self.vocab_size:
            raise UserError(
                f"the model scores {scores.shape[-1]} tokens but the vocabulary has {self.vocab_size}; "
                "use the model trained with this tokenizer"
            )
        allowed = self.allowed(input_ids)
        if scores.shape[-1] > self.vocab_size:  # a model vocabulary padded beyond the tokenizer's
            allowed = torch.nn.functional.pad(allowed, (0, scores.shape[-1] - self.vocab_size), value=False)
        masked = torch.where(allowed, scores, float("-inf"))
        if self.allow_punctuation and self.punctuation_lookahead:
            masked = self._charge_punctuation(scores, allowed, masked)
        # An earlier processor (no_repeat_ngram_size, repetition rules...) may have set every allowed
        # token to -inf; give them a finite low score so the row still has something to choose.
        # (Computed for every row, not under `if stuck.any()`, to avoid a device sync per step.)
        stuck = (masked.amax(dim=1) == float("-inf"))[:, None]
        rescued = torch.full_like(scores, float("-inf")).masked_fill(allowed, FALLBACK_SCORE)
        # A row with nothing allowed at all (an impossible beam, or a finished row when no closing
        # token exists) keeps its scores: all -inf would break sampling.
        rescued = torch.where(allowed.any(dim=1, keepdim=True), rescued, scores)
        return torch.where(stuck, rescued, masked)


    def _charge_punctuation(self, scores, allowed, masked):
        """Make a mark pay for the word it puts off.

        Masking alone over-rewards punctuation: when the words of the needed length are unlikely,
        a comma or a quote takes most of the renormalized probability, yet the word is still owed
        right after it. A one-step look-ahead fixes that: a mark's score gains log W, the probability
        the model gives the allowed words now, as an estimate of what the owed word will cost later.
        """
        width = scores.shape[-1]
        is_word = torch.nn.functional.pad(self.is_word, (0, width - self.vocab_size), value=False)
        log_probs = scores.float().log_softmax(dim=-1)
        word_mass = torch.where(allowed & is_word, log_probs, float("-inf")).logsumexp(dim=-1, keepdim=True)
        owes_a_word = allowed & ~is_word & (word_mass > float("-inf"))  # not at the end: nothing owed
        return torch.where(owes_a_word, masked + word_mass.to(masked.dtype), masked)


class PilishStoppingCriteria(StoppingCriteria):
    """Stops each row once it has spelled all digits and, when punctuation is on, has taken its
    closing mark (or end token) too."""

    def __init__(self, processor: PilishLogitsProcessor):
        self.processor = processor

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        done = self.processor.done(input_ids)
        if not self.processor.allow_punctuation or not self.processor.has_closing:
            return done
        last_token_is_word = self.processor._per_token_digits(input_ids[:, -1:]).squeeze(1) > 0
        return done & ~last_token_is_word
