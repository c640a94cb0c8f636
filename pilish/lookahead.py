"""Look-ahead for the next digit: a cost for a word after which the next digit can only be spelled badly.

Where the next digit is 1, only "a" or "i" can follow, and after "the" or "so" neither reads well
("the a", "a so"). The mask alone sees one token at a time, so the beam walks into such spots and
then has to write them. The look-ahead of a text is how well the digit it owes next can be spelled
after its last token: the log of the likeliest word of the needed length after that token, under the
training data's bigrams, directly or with a mark between (`home . i`). `NextDigitLookahead` adds to
each word's score the change in look-ahead it makes. The changes add up along a text to its last
look-ahead, so a hypothesis is credited for where it stands now, never twice for what it already wrote.

The bigram counts are continuation counts read from the n-gram model's trigrams (pilish/ngram.py):
the number of different tokens seen before "w v" (Kneser and Ney's lower-order count, which says
how freely "w v" occurs), add-k smoothed. The table, [lengths, vocabulary], is built once per text.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

ADD_K = 0.1  # add-k smoothing of the bigram counts: an unseen "w v" counts 0.1


def lookahead_table(trigram_keys: torch.LongTensor, ids_with_length: torch.BoolTensor, mark_ids: torch.LongTensor,
                    k: float = ADD_K) -> torch.FloatTensor:
    """[lengths + 1, vocabulary]: row L, column w: log of the likeliest word of L letters after w,
    directly or after one of `mark_ids` (`home . i`), from the add-k smoothed bigram probabilities
    P(v | w) = (n(w v) + k) / (n(w .) + k V) of the continuation counts n of `trigram_keys` (sorted
    (a * V + b) * V + c keys), over the words of each length in `ids_with_length` ([lengths, V]).
    -inf for a length with no words; the last row, 0, for "no digit left" (nothing is owed)."""
    lengths, size = ids_with_length.shape
    pairs, counts = torch.unique(trigram_keys % size ** 2, return_counts=True)
    first, then = pairs // size, pairs % size
    totals = torch.zeros(size).index_add_(0, first, counts.float()) + k * size
    unseen = (k / totals).log()
    log_probs = (counts + k).log() - totals[first].log()
    letters = torch.zeros(size, dtype=torch.long)  # each word's row in ids_with_length (0: not a word)
    for length, row in enumerate(ids_with_length):
        letters[row] = length
    direct = torch.where(ids_with_length.any(dim=1)[:, None], unseen[None], float("-inf")).flatten()
    direct = direct.scatter_reduce(0, letters[then] * size + first, log_probs, "amax").view(lengths, size)
    direct[0] = float("-inf")  # length 0 stands for "no word can spell it"
    table = direct.clone()
    for mark in mark_ids.tolist():
        to_mark = unseen.clone()  # [V]: log P(mark | w)
        to_mark[first[then == mark]] = log_probs[then == mark]
        table = torch.maximum(table, to_mark[None] + direct[:, mark, None])
    return torch.cat([table, torch.zeros(1, size)])


class NextDigitLookahead(LogitsProcessor):
    """Adds `weight` times the change in look-ahead each word makes (see the module docstring).

    A row's look-ahead is the table's value for its last word and the length the plan needs next; a
    word's score gains `weight` x (the look-ahead after it - the row's now). The gains add up along a
    text to its last look-ahead, so a hypothesis is credited for where it stands now, never twice for a
    word it has since written. A mark gains nothing: the table already credits a word for the marks
    that may follow it (`home . i`), and crediting the mark too would end sentences wherever a 1 is next.

    It reads the digit plan and the rows' positions of `pilish` (the PilishLogitsProcessor): a word at
    a row's position p spells up to p + digits(word), and the plan says which lengths may come next.
    Put it before that mask, which comes last and bans what the plan rules out.
    """

    def __init__(self, pilish, table: torch.FloatTensor, weight: float):
        self.pilish, self.table, self.weight = pilish, table, weight
        # the digits a word may spell (1; 2 for the standard rules' long words), and whether the plan
        # has any two-digit move at all (never under the basic rules)
        self.spelled = pilish.digits_spelled[pilish.tables.is_word].unique().tolist()
        self.two_digit = bool(pilish.plan.two_digit_length.any())

    def look(self, position: torch.LongTensor, words: torch.LongTensor) -> torch.FloatTensor:
        """The look-ahead after `words` when the plan stands at `position` (same shapes)."""
        plan = self.pilish.plan
        return torch.maximum(self.table[plan.one_digit_length[position], words],
                             self.table[plan.two_digit_length[position], words])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        pilish, size = self.pilish, self.pilish.vocab_size
        self.table = self.table.to(scores.device)
        position = pilish.positions(input_ids).clamp(max=len(pilish.plan))
        ids = input_ids.clamp(max=size - 1)
        is_word = pilish.tables.is_word
        # the row's last word (its first token if it has none): marks after it change nothing
        last = (torch.arange(ids.shape[1], device=ids.device) * is_word[ids]).argmax(dim=1)
        now = self.look(position, ids.gather(1, last[:, None]).squeeze(1))
        # after a word that spells k digits the plan stands at position + k, the same for every such
        # word: the look-ahead of all of them is one row of the table per row (not a gather per word)
        ahead = torch.full((len(position), size), float("-inf"), device=scores.device)
        for k in self.spelled:
            after = (position + k).clamp(max=len(pilish.plan))
            rows = self.table[pilish.plan.one_digit_length[after]]
            if self.two_digit:
                rows = torch.maximum(rows, self.table[pilish.plan.two_digit_length[after]])
            ahead = torch.where(pilish.digits_spelled[None] == k, rows, ahead)
        # a word the plan rules out may look -inf ahead: the mask bans it anyway
        gain = torch.where(is_word[None], self.weight * (ahead - now[:, None]), 0.0)
        return torch.cat([scores[:, :size] + gain.to(scores.dtype), scores[:, size:]], dim=1)
