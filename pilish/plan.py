"""The digit plan: for each position in the digits, the word lengths that may come next.

A word may spell the next digit (or, under the standard rules, the next two), but only if the rest
of the digits can still be spelled afterwards with the lengths the vocabulary has: the plan is
worked out backwards once per text, so the generator never walks into a dead end.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from pilish.rules import PilishError, can_finish, check_digit_string, check_rules, check_spellable, moves


@dataclass(frozen=True)
class DigitPlan:
    digits: str
    rules: str
    finishable: tuple[bool, ...]  # [len(digits) + 1]: the digits from here on can be spelled
    # [len(digits) + 1]: the word length that spells one digit (two digits) from each position, or 0
    # where that move is impossible or leads to a dead end; at len(digits) (done), `done_row`
    one_digit_length: torch.LongTensor
    two_digit_length: torch.LongTensor

    @classmethod
    def build(cls, digits: str, rules: str, available_lengths: set[int], done_row: int) -> DigitPlan:
        """The plan for `digits` with words of `available_lengths`; a PilishError naming the missing
        lengths when they cannot spell the digits. `done_row` is what the position after the last
        digit points at (the processor's row of closing tokens)."""
        check_rules(rules)
        check_digit_string(digits, "the digits to spell")
        check_spellable(available_lengths, digits, rules)
        finishable = can_finish(digits, rules, available_lengths)
        n = len(digits)
        one_digit_length = torch.zeros(n + 1, dtype=torch.long)
        two_digit_length = torch.zeros(n + 1, dtype=torch.long)
        for position in range(n):
            for length, after in moves(digits, rules, position):
                if length in available_lengths and finishable[after]:
                    target = one_digit_length if after == position + 1 else two_digit_length
                    target[position] = length
        one_digit_length[n] = done_row
        return cls(digits, rules, tuple(finishable), one_digit_length, two_digit_length)

    def __len__(self) -> int:
        return len(self.digits)

    def check_start(self, start_digit: int | torch.LongTensor) -> None:
        """A PilishError unless every start is a position the text can go on from."""
        n = len(self.digits)
        for start in torch.as_tensor(start_digit).flatten().tolist():
            if not 0 <= start <= n or not self.finishable[start]:
                raise PilishError(
                    f"cannot continue the Pilish from digit {start} of {n}: "
                    "start from 0 or from a digit count an earlier run reached"
                )

    def to(self, device) -> DigitPlan:
        moved = {item.name: getattr(self, item.name).to(device) for item in fields(self)
                 if isinstance(getattr(self, item.name), torch.Tensor)}
        return replace(self, **moved)
