"""The Pilish writing engine: a LogitsProcessor that lets a model write only Pilish, the stopping
criteria that end a text once its digits are spelled, and `write`, which drives `model.generate`
through texts of any length by sliding the context window.

Import it through `pilish` (`pilish.write`, `pilish.PilishLogitsProcessor`): the rules, digits and
verifier there need no torch, this module does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

import torch
from transformers import LogitsProcessor, StoppingCriteria

from common import SPACE_MARK, detokenize, split_words, token_nll
from pilish import (CLOSING_MARKS, DECODINGS, FALLBACK_SCORE, MARK, OTHER, WORD, PilishError,
                    Verification, _can_finish, _check_digit_string, _is_punctuation_token, _is_quote_token,
                    _is_word_token, _moves, check_rules, check_spellable, digits_of_word, letters_in, verify)


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
        check_rules(rules)
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
        is_quote = is_punctuation & torch.tensor([_is_quote_token(token) for token in vocab])

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
                raise PilishError(
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
            raise PilishError(
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


class FluencyProcessor(LogitsProcessor):
    """Rules over the whole text so far, not just the window the model sees, so they survive the
    sliding window of a long text: no word twice in a row ("a a"), no word n-gram the text already
    has, and a bonus for the words that follow the last one or two words somewhere in the training
    data (a prior from real text next to the model's scores), and for the marks that follow the last
    two tokens there (`home .`, `said ,`, `, "`): without it the word prior crowds the marks out and
    the sentences run on.

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
        self.bigrams = ngrams.get("bigrams") if bigram_bonus else None
        self.trigrams = ngrams.get("trigrams") if trigram_bonus else None
        self.marks = ngrams.get("marks") if mark_bonus else None  # older ngrams.pt files have none
        self.bigram_bonus, self.trigram_bonus, self.mark_bonus = bigram_bonus, trigram_bonus, mark_bonus
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
        words = self.history + [t for t in new if t < self.vocab_size and self.is_word[t]]
        self.quote_open = self._quote_open_after(self.quote_open, new)
        n = self.no_repeat_words
        if n >= 2:
            for i in range(max(0, len(self.history) - n + 1), len(words) - n + 1):
                self.seen.setdefault(tuple(words[i:i + n - 1]), set()).add(words[i + n - 1])
        self.text, self.history = list(history), words
        self.last_tokens = list(history[-2:])
        self.prompt_length = prompt_length

    def _quote_open_after(self, is_open: bool, tokens: list[int]) -> bool:
        for token in tokens:
            if token in self.opening:
                is_open = True
            elif token in self.closing:
                is_open = False
        return is_open

    def _followers(self, table, keys: list[int], weight: float, rows: list[int]):
        """(row ids, next-word ids, weights) of the words stored under each row's key in a sorted
        table of key * vocab_size + next ids: one search for all rows, no loop over them."""
        keys = torch.tensor(keys, dtype=torch.long)
        lo = torch.searchsorted(table, keys * self.vocab_size)
        counts = torch.searchsorted(table, (keys + 1) * self.vocab_size) - lo
        row_of = torch.repeat_interleave(torch.tensor(rows, dtype=torch.long), counts)
        # each entry's index in the table: its row's lo plus its place among that row's entries
        first = torch.repeat_interleave(lo - (counts.cumsum(0) - counts), counts)
        entries = table[first + torch.arange(len(row_of))]
        next_ids = entries - torch.repeat_interleave(keys, counts) * self.vocab_size
        return row_of, next_ids, torch.full((len(row_of),), weight)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        n = self.no_repeat_words
        banned_rows, banned_ids = [], []
        bigram_keys, trigram_keys, bigram_rows, trigram_rows, mark_keys, mark_rows = [], [], [], [], [], []
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            new_words = [t for t in ids if t < self.vocab_size and self.is_word[t]]
            words = self.history[-max(n, 2):] + new_words  # enough words for every key below
            banned = set()
            if self.no_immediate_repeat and words:
                banned.add(words[-1])
            if n >= 2 and len(words) >= n - 1:
                key = tuple(words[-(n - 1):])
                banned |= self.seen.get(key, set())
                tail = self.history[-(n - 1):] + new_words  # n-grams the row itself wrote in this window
                banned |= {gram[-1] for gram in zip(*(tail[k:] for k in range(n))) if gram[:-1] == key}
            if self.opening or self.closing:
                banned |= self.opening if self._quote_open_after(self.quote_open, ids) else self.closing
            banned_rows += [row] * len(banned)
            banned_ids += banned
            if words:
                bigram_keys.append(words[-1])
                bigram_rows.append(row)
            if len(words) >= 2:
                trigram_keys.append(words[-2] * self.vocab_size + words[-1])
                trigram_rows.append(row)
            last = (self.last_tokens + ids)[-2:]
            if len(last) == 2 and max(last) < self.vocab_size:
                mark_keys.append(last[0] * self.vocab_size + last[1])
                mark_rows.append(row)
        if banned_ids:
            scores[banned_rows, banned_ids] = float("-inf")
        found = [self._followers(table, keys, weight, rows) for table, keys, weight, rows in (
            (self.bigrams, bigram_keys, self.bigram_bonus, bigram_rows),
            (self.trigrams, trigram_keys, self.trigram_bonus, trigram_rows),
            (self.marks, mark_keys, self.mark_bonus, mark_rows)) if table is not None and keys]
        if not found:
            return scores
        row_of, next_ids, weights = (torch.cat(part).to(scores.device) for part in zip(*found))
        bonus = torch.zeros_like(scores).index_put_((row_of, next_ids), weights.to(scores.dtype), accumulate=True)
        return scores + bonus


NGRAMS_FILE = "ngrams.pt"  # in a model folder: the training data's word n-grams, for the prior


def load_ngrams(folder) -> dict | None:
    """The n-gram table saved beside a model (`save_ngrams`), or None when there is none."""
    from pathlib import Path
    path = Path(folder, NGRAMS_FILE)
    return torch.load(path) if path.is_file() else None


def save_ngrams(folder, table: dict) -> None:
    from pathlib import Path
    torch.save(table, Path(folder, NGRAMS_FILE))


def ngram_table(tokenizer, stories, min_count: int = 1) -> dict:
    """{"bigrams", "trigrams", "marks"}: sorted int64 tensors of the word bigrams (a * V + b) and
    trigrams ((a * V + b) * V + c) of `stories` (V = vocabulary size), marks between words skipped,
    and of the marks that follow two tokens ((a * V + b) * V + mark: `mom said ,`, `said , "`), each occurring
    at least `min_count` times; none spans stories. For FluencyProcessor's prior."""
    from collections import Counter
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    is_word = [_is_word_token(token) for token in vocab]
    is_mark = [_is_punctuation_token(token) for token in vocab]
    size = len(vocab)
    counts = {2: Counter(), 3: Counter(), "marks": Counter()}
    unk = tokenizer.unk_token_id
    stories = list(stories)
    for start in range(0, len(stories), 1000):
        for ids in tokenizer(stories[start:start + 1000], add_special_tokens=False)["input_ids"]:
            words = [t for t in ids if is_word[t] and t != unk]
            counts[2].update(a * size + b for a, b in zip(words, words[1:]))
            counts[3].update((a * size + b) * size + c for a, b, c in zip(words, words[1:], words[2:]))
            counts["marks"].update((a * size + b) * size + c for a, b, c in zip(ids, ids[1:], ids[2:])
                                   if is_mark[c] and unk not in (a, b))
    return {name: torch.tensor(sorted(k for k, c in counts[n].items() if c >= min_count), dtype=torch.long)
            for name, n in (("bigrams", 2), ("trigrams", 3), ("marks", "marks"))}


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


# ----------------------------------------------------------------------------------------------
# Writing a text


@dataclass
class PilishText:
    """One Pilish text as `write` returns it."""

    text: str  # readable English: the prompt's words, then the generated ones, ending a sentence
    ids: list[int]  # the generated token ids (the prompt's not included)
    prompt_ids: list[int]  # the prompt's token ids ([UNK] for words the vocabulary lacks)
    prompt_digits: int  # digits the prompt spelled itself
    verification: Verification  # `verify(text, digits, rules)`: exact, or where it departs
    topic_ids: list[int] = field(default_factory=list)  # the topic's token ids, read before the prompt


def decoding_settings(decoding="beam", num_beams=8, temperature=0.8, top_k=50, top_p=0.95,
                      no_repeat_ngram_size=3, repetition_penalty=1.2) -> dict:
    """The `model.generate` arguments for beam search or sampling, with the repetition rules."""
    if decoding not in DECODINGS:
        raise PilishError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}")
    if num_beams < 1:
        raise PilishError(f"the number of beams must be at least 1, not {num_beams}")
    common = dict(no_repeat_ngram_size=no_repeat_ngram_size or None,
                  repetition_penalty=repetition_penalty if repetition_penalty != 1 else None)
    if decoding == "beam":
        return dict(do_sample=False, num_beams=num_beams, early_stopping=True, **common)
    return dict(do_sample=True, temperature=temperature, top_k=top_k or None, top_p=top_p, **common)


def context_window(model, window: int = 0) -> int:
    """Tokens of context the model sees: `window`, at most what it was trained on (0 = all of that)."""
    return min(window or model.config.n_positions, model.config.n_positions)


def finish_sentence(text: str) -> str:
    """A text ends with a full stop (the closing mark is allowed, not forced) and closes its quote."""
    text = text if re.search(r"[.!?][\"']?$", text) else text + "."
    return text + '"' if text.count('"') % 2 else text


def check_prompt(tokenizer, prompt: str, digits: str, rules: str = "basic"):
    """(the prompt's words, their ids, its `Verification`); a PilishError when its words break the digits."""
    check_rules(rules)
    _check_digit_string(digits, "the digits to spell")
    words, prompt_ids = split_words(tokenizer, prompt)
    spelled = verify(" ".join(words), digits, rules)
    if spelled.departed:
        raise PilishError(f"the prompt does not follow the digits: {spelled.departure}")
    return words, prompt_ids, spelled


def write(model, tokenizer, digits: str, *, rules: str = "basic", prompt: str = "", topic: str = "",
          window: int = 0, allow_punctuation: bool = True, punctuation_lookahead: bool = True,
          no_repeat_words: int = 0, no_immediate_repeat: bool = False, ngrams: dict | None = None,
          bigram_bonus: float = 0.0, trigram_bonus: float = 0.0, mark_bonus: float = 0.0,
          balance_quotes: bool = False, progress=None, **generate_kwargs) -> PilishText:
    """Make `model` write Pilish that spells `digits` under `rules`, continuing `prompt`.

    The prompt's own words must spell the first digits. `topic` is text the model reads first, to
    say what the Pilish is about ("Once upon a time, there was a dragon named Max."): it spells no
    digits and is not part of the returned text. The text may be far longer than the model's
    context: it is written in windows of `window` tokens (0 = the model's whole context), each call
    to `generate` seeing the last 3/4 of a window while the processor carries the digit position
    over; the topic stays pinned at the start of every window, so a long text keeps its subject.
    `no_repeat_words`, `no_immediate_repeat`, and `ngrams` (from `ngram_table`) with
    `bigram_bonus` / `trigram_bonus` / `mark_bonus`, and `balance_quotes` (a double quote opens only
    when none is open and closes only an open one) go to a FluencyProcessor, which sees the whole
    text, not just the window. `generate_kwargs` go to `model.generate` (see `decoding_settings`); `progress`, if
    given, is a tqdm-like object whose `update(n)` hears of every n digits spelled.
    """
    words, prompt_ids, spelled = check_prompt(tokenizer, prompt, digits, rules)
    topic_ids = split_words(tokenizer, topic)[1] if topic.strip() else []
    eot = tokenizer.eos_token_id
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    processor = PilishLogitsProcessor(
        vocab, digits, rules=rules, allow_punctuation=allow_punctuation,
        punctuation_lookahead=punctuation_lookahead,
        banned_ids=tokenizer.all_special_ids, end_ids=[eot], start_digit=spelled.matched)
    stopping = PilishStoppingCriteria(processor)
    fluency = None
    if balance_quotes or no_repeat_words or no_immediate_repeat or (
            ngrams and (bigram_bonus or trigram_bonus or mark_bonus)):
        quotes = ([i for i, token in enumerate(vocab) if token == SPACE_MARK + '"'],
                  [i for i, token in enumerate(vocab) if token == '"']) if balance_quotes else ((), ())
        fluency = FluencyProcessor(processor.is_word, no_repeat_words, no_immediate_repeat, ngrams,
                                   bigram_bonus, trigram_bonus, mark_bonus, quotes)
    context_length = context_window(model, window)
    if context_length < 4:
        raise PilishError(f"a context window of {context_length} tokens is too short to write in; use 4 or more")
    new_per_window = max(1, context_length // 4)  # then keep 3/4 of a context when the window slides
    # A story starts after <|endoftext|>, as in training. With a topic, <|endoftext|> and the topic
    # are pinned: every window starts with them and slides only over the Pilish.
    pinned = [eot, *topic_ids] if topic_ids else []
    text_ids = [*prompt_ids] if topic_ids else [eot, *prompt_ids]
    if len(pinned) > (context_length - new_per_window) // 2:
        raise PilishError(f"the topic is {len(topic_ids)} tokens long; keep it under half of the "
                          f"{context_length - new_per_window} tokens of context the model reads")
    copies = generate_kwargs.get("num_beams") or 1
    generated, position = [], spelled.matched
    if progress is not None and position:
        progress.update(position)
    while True:
        window_ids = pinned + (text_ids + generated)[-(context_length - new_per_window - len(pinned)):]
        window_ids = torch.tensor([window_ids], device=model.device)
        processor.restart(window_ids.shape[1], position)
        if fluency is not None:
            fluency.restart(text_ids + generated, window_ids.shape[1])
        output = model.generate(
            window_ids, attention_mask=torch.ones_like(window_ids), max_new_tokens=new_per_window,
            logits_processor=[processor] if fluency is None else [fluency, processor], stopping_criteria=[stopping],
            eos_token_id=eot, pad_token_id=tokenizer.pad_token_id, use_cache=True,
            **shared_prefill(model, window_ids, copies), **generate_kwargs)
        new = output[0, window_ids.shape[1]:].tolist()
        if eot in new:  # the end token closes the text; what follows is padding
            new = new[:new.index(eot) + 1]
        written = output[:, :window_ids.shape[1] + len(new)]
        before, position = position, int(processor.positions(written)[0])
        if not new or (before == position < len(digits) and len(new) > 2):
            # at most two marks stand between words, so three new tokens spell a digit: a bug otherwise
            raise RuntimeError(f"no progress at digit {position} of {len(digits)}: the Pilish processor is broken")
        generated += new
        if progress is not None:
            progress.update(position - before)
        if bool(stopping(written)[0]) or new[-1] == eot:
            break
    generated = [token for token in generated if token != eot]
    text = finish_sentence(detokenize(tokenizer, generated, words_before=words))
    return PilishText(text, generated, list(prompt_ids), spelled.matched, verify(text, digits, rules),
                      list(topic_ids))


def _cache_argument() -> str:
    """What `generate` and the models call the KV cache: `cache` since transformers 5.2x renamed
    `past_key_values` (which still works there, with a warning)."""
    from transformers.generation import utils
    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def shared_prefill(model, window_ids: torch.LongTensor, copies: int) -> dict:
    """`generate`'s KV-cache argument: the cache of the window less its last token, read once and
    repeated for each of `copies` rows ({} for one row). `generate` repeats the window for every beam
    and would read it once per beam, 8 times the work on each of a long text's ~200 windows; given the
    cache, it reads only the last token."""
    if copies == 1 or window_ids.shape[1] < 2:
        return {}
    name = _cache_argument()
    with torch.no_grad():
        cache = model(window_ids[:, :-1], use_cache=True)[name]
    cache.batch_repeat_interleave(copies)
    return {name: cache}


def nll_per_word(model, tokenizer, ids, prompt_ids=(), window: int = 0) -> float:
    """Mean negative log-likelihood (nats) of the tokens `ids` per word among them, under the model
    alone (no Pilish mask), after <|endoftext|> and `prompt_ids`; long texts in sliding windows."""
    ids = list(ids)
    if not ids:
        return 0.0
    losses = token_nll(model, [tokenizer.eos_token_id, *prompt_ids, *ids], context_window(model, window))[-len(ids):]
    special = set(tokenizer.all_special_ids)
    words = sum(1 for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(ids))
                if token_id not in special and letters_in(token))
    return float(losses.sum()) / max(1, words)
