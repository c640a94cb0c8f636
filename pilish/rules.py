"""Pilish rules, digits and verification: no torch, no model.

"How I need a drink, alcoholic ..." spells 3 1 4 1 5 9 ... : each word's letter count is the next
digit, and a 10-letter word stands for 0. Under the "standard" rules a word of more than 10 letters
stands for two digits (a 12-letter word spells "12").

  * the two rule sets, what each word length spells, and which word lengths may spell the digits
    from a position (`moves`, `can_finish`);
  * the digit sources: pi, e, phi, sqrt2 or literal digits (`get_digits`);
  * `verify`, which checks any text against a digit string and says where it departs;
  * `check_spellable`, which tells the user early when a vocabulary cannot spell the digits.

Errors are `PilishError` (a ValueError) with a message that says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import mpmath

from pilish.tokens import letters_in, words_in

RULES = ("basic", "standard")
NAMED_DIGITS = ("pi", "e", "phi", "sqrt2")


class PilishError(ValueError):
    """Digits, rules, a prompt or a vocabulary that cannot make Pilish; the message says why."""


# ----------------------------------------------------------------------------------------------
# Letters and rules


def check_rules(rules: str) -> None:
    if rules not in RULES:
        raise PilishError(f'unknown Pilish rules "{rules}": use one of {", ".join(RULES)}')


def digits_of_word(n_letters: int, rules: str) -> str | None:
    """The digits a word of `n_letters` letters spells, or None if the rules cannot use it.

    Both rules: 1..9 letters spell that digit, 10 letters spell "0", no letters spell nothing.
    basic: longer words cannot be used. standard: they spell their length ("12" for 12 letters).
    """
    check_rules(rules)
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


def moves(digits: str, rules: str, position: int) -> list[tuple[int, int]]:
    """The (word length, position after the word) pairs that may spell digits from `position`."""
    moves = [(_one_digit_length(digits[position]), position + 1)]
    if rules == "standard":
        long_length = _two_digit_length(digits, position)
        if long_length is not None:
            moves.append((long_length, position + 2))
    return moves


def can_finish(digits: str, rules: str, available_lengths: set[int]) -> list[bool]:
    """finishable[p]: the digits from position p to the end can be spelled with words of the
    available lengths. Computed backwards, so the generator never walks into a dead end."""
    finishable = [False] * (len(digits) + 1)
    finishable[len(digits)] = True
    for position in range(len(digits) - 1, -1, -1):
        finishable[position] = any(
            length in available_lengths and finishable[after]
            for length, after in moves(digits, rules, position)
        )
    return finishable


# ----------------------------------------------------------------------------------------------
# Digit sources


def check_digit_string(digits: str, what: str) -> None:
    if not isinstance(digits, str) or not re.fullmatch(r"[0-9]+", digits):
        raise PilishError(f"{what} must be a non-empty string of the digits 0-9, got {digits!r}")


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
        raise PilishError(f"the number of digits must be a whole number of at least 1, got {n!r}")
    name = source.strip().lower() if isinstance(source, str) else source
    if name in NAMED_DIGITS:
        return _named_digits(name, n)
    if isinstance(source, str) and re.fullmatch(r"[0-9]+", source):
        return source[:n]
    raise PilishError(
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

    Words are found with `words_in`, so punctuation is ignored and "don't" is one 4-letter word.
    """
    check_rules(rules)
    total = len(digits)
    position = 0  # digits spelled so far
    words = (word for word in words_in(text) if letters_in(word) > 0)
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
            for length, after in moves(digits, rules, position)
        )
    missing, position = set(), 0
    while position < n:
        length, position = choice[position]
        if length not in available_lengths:
            missing.add(length)
    return sorted(missing)


def check_spellable(available_lengths: set[int], digits: str, rules: str) -> None:
    """Raise PilishError naming the missing word lengths when no words of `available_lengths` can
    spell `digits` under `rules`."""
    check_rules(rules)
    check_digit_string(digits, "the digits to spell")
    available_lengths = set(available_lengths)
    if can_finish(digits, rules, available_lengths)[0]:
        return
    missing = _missing_lengths(available_lengths, digits, rules)
    hint = ""
    if rules == "basic" and can_finish(digits, "standard", available_lengths)[0]:
        hint = " (or use the standard rules, which can spell them with longer words)"
    letters = "letter" if missing == [1] else "letters"
    raise PilishError(
        f"the vocabulary has no words of {_or_list(missing)} {letters}, which these digits need; "
        f"a tokenizer trained on more text, or with a larger vocabulary, has them{hint}"
    )
