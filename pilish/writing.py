"""Writing Pilish with a model: `write` drives `model.generate` through a text of any length.

The text is written in windows: each call to `generate` sees the last 3/4 of the model's context
while the processor carries the digit position over, so a 10,000-digit text is ~200 windows. How
it writes (rules, punctuation, decoding, the n-gram mix) is one `WriteOptions`, whose fields are
pilish_generate.py's settings of the same (lowercase) names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

import torch

from lmkit.scoring import context_window
from lmkit.text import SPACE_MARK, detokenize, split_words
from pilish.lookahead import NextDigitLookahead, lookahead_table
from pilish.ngram import NgramModel
from pilish.prior import WritingPrior
from pilish.processor import PilishLogitsProcessor, PilishStoppingCriteria
from pilish.rules import PilishError, Verification, check_digit_string, check_rules, verify
from pilish.vocabulary import tables_for

DECODINGS = ("beam", "sample")
MAX_LOOKAHEAD_WEIGHT = 100  # far above, the costs overflow and the text can break
MAX_SENTENCE_BONUS = 20  # e^20 times likelier: every allowed end would be taken (the unseen pair cost's bound too)


@dataclass(frozen=True)
class WriteOptions:
    """How `write` writes; the defaults are pilish_generate.py's (the comments there say more)."""

    rules: str = "basic"  # basic: 10-letter words spell 0; standard: longer words spell two digits
    allow_punctuation: bool = True  # punctuation between words (spells nothing)
    punctuation_lookahead: bool = True  # a mark pays for the word it puts off
    decoding: str = "beam"  # beam or sample
    num_beams: int = 8  # for beam
    temperature: float = 0.8  # for sample
    top_k: int = 50  # for sample (0 = all)
    top_p: float = 0.95  # for sample
    no_repeat_ngram_size: int = 0  # generate's own rule, within a window (0 = off)
    repetition_penalty: float = 1.0  # generate's own rule, within a window (1.0 = off)
    no_repeat_words: int = 3  # no run of this many words twice in the whole text (0 = off)
    no_immediate_repeat: bool = True  # never the same word twice in a row
    ngram_weight: float = 0.7  # the n-gram model's share in the mix with the model (0 = the model alone)
    quotes: bool = False  # quote marks (" ') between words; False: none (the quick start's model puts them where no one speaks)
    balance_quotes: bool = True  # a double quote opens only when none is open, closes only an open one
    lookahead_weight: float = 1.0  # cost for a word after which the next digit reads badly (0 = off)
    real_sentence_ends: bool = True  # . ! ? only after two tokens that end a sentence in the stories (with the mix)
    sentence_bonus: float = 3.0  # log-probability added to each real sentence end (0 = off; only with real_sentence_ends)
    unseen_pair_cost: float = 3.0  # log-probability taken from a token never seen after the last one (0 = off; with the mix)
    context_length: int = 0  # tokens of context per window (0 = all the model was trained on)

    def __post_init__(self):
        check_rules(self.rules)
        if self.decoding not in DECODINGS:
            raise PilishError(f"decoding must be one of {', '.join(DECODINGS)}, not {self.decoding!r}")
        if self.num_beams < 1:
            raise PilishError(f"the number of beams must be at least 1, not {self.num_beams}")
        if not 0 <= self.lookahead_weight <= MAX_LOOKAHEAD_WEIGHT:
            raise PilishError(f"the look-ahead weight must be between 0 and {MAX_LOOKAHEAD_WEIGHT}, not "
                              f"{self.lookahead_weight}")
        if not 0 <= self.sentence_bonus <= MAX_SENTENCE_BONUS:
            raise PilishError(f"the sentence bonus must be between 0 and {MAX_SENTENCE_BONUS}, not "
                              f"{self.sentence_bonus}")
        if not 0 <= self.unseen_pair_cost <= MAX_SENTENCE_BONUS:
            raise PilishError(f"the unseen pair cost must be between 0 and {MAX_SENTENCE_BONUS}, not "
                              f"{self.unseen_pair_cost}")
        if not 0 <= self.ngram_weight <= 1:
            raise PilishError(f"the n-gram weight must be between 0 and 1, not {self.ngram_weight}")

    @classmethod
    def from_settings(cls, settings) -> WriteOptions:
        """The options from an object with an UPPERCASE attribute for each field (a script's settings)."""
        return cls(**{item.name: getattr(settings, item.name.upper()) for item in fields(cls)})

    @property
    def rows(self) -> int:
        """Rows that `generate` runs per text: a beam each, or one sample."""
        return self.num_beams if self.decoding == "beam" else 1

    def generate_kwargs(self) -> dict:
        """The `model.generate` arguments for beam search or sampling, with the repetition rules."""
        common = dict(no_repeat_ngram_size=self.no_repeat_ngram_size or None,
                      repetition_penalty=self.repetition_penalty if self.repetition_penalty != 1 else None)
        if self.decoding == "beam":
            return dict(do_sample=False, num_beams=self.num_beams, early_stopping=True, **common)
        return dict(do_sample=True, temperature=self.temperature, top_k=self.top_k or None, top_p=self.top_p,
                    **common)

    def uses_prior(self, ngrams: NgramModel | None) -> bool:
        """Whether any rule of the WritingPrior, or its n-gram mix, is on (the mix only with a model to mix)."""
        mixes = ngrams is not None and self.ngram_weight > 0
        return bool(self.balance_quotes or self.no_repeat_words or self.no_immediate_repeat or mixes)


@dataclass
class PilishText:
    """One Pilish text as `write` returns it."""

    text: str  # readable English: the prompt's words, then the generated ones, ending a sentence
    ids: list[int]  # the generated token ids (the prompt's not included)
    prompt_ids: list[int]  # the prompt's token ids ([UNK] for words the vocabulary lacks)
    prompt_digits: int  # digits the prompt spelled itself
    verification: Verification  # `verify(text, digits, rules)`: exact, or where it departs
    topic_ids: list[int] = field(default_factory=list)  # the topic's token ids, read before the prompt


def finish_sentence(text: str) -> str:
    """A text ends with a full stop (the closing mark is allowed, not forced) and closes its quote."""
    text = text if re.search(r"[.!?][\"']?$", text) else text + "."
    return text + '"' if text.count('"') % 2 else text


def check_prompt(tokenizer, prompt: str, digits: str, rules: str = "basic"):
    """(the prompt's words, their ids, its `Verification`); a PilishError when its words break the digits."""
    check_rules(rules)
    check_digit_string(digits, "the digits to spell")
    words, prompt_ids = split_words(tokenizer, prompt)
    spelled = verify(" ".join(words), digits, rules)
    if spelled.departed:
        raise PilishError(f"the prompt does not follow the digits: {spelled.departure}")
    return words, prompt_ids, spelled


def make_processors(tokenizer, digits: str, options: WriteOptions, ngrams: NgramModel | None = None,
                    start_digit: int = 0):
    """(the `logits_processor` list for `generate`: the prior and the look-ahead, if on, then the
    Pilish mask; the Pilish processor; its stopping criteria)."""
    tables = tables_for(tokenizer, options.quotes)
    processor = PilishLogitsProcessor(tables, digits, rules=options.rules, start_digit=start_digit,
                                      allow_punctuation=options.allow_punctuation,
                                      punctuation_lookahead=options.punctuation_lookahead)
    processors = [processor]
    if options.uses_prior(ngrams):
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        quotes = ([i for i, token in enumerate(vocab) if token == SPACE_MARK + '"'],
                  [i for i, token in enumerate(vocab) if token == '"']) if options.balance_quotes else ((), ())
        processors.insert(0, WritingPrior(
            tables.is_word, options.no_repeat_words, options.no_immediate_repeat, ngrams, options.ngram_weight,
            quotes, tables.is_closing.nonzero()[:, 0].tolist() if options.allow_punctuation else (),
            options.real_sentence_ends, options.sentence_bonus, options.unseen_pair_cost))
    if options.lookahead_weight and ngrams is not None:  # just before the mask
        marks = (tables.is_mark | tables.is_quote).nonzero()[:, 0]
        table = lookahead_table(ngrams.trigrams.keys, tables.ids_with_length, marks)
        processors.insert(-1, NextDigitLookahead(processor, table, options.lookahead_weight))
    return processors, processor, PilishStoppingCriteria(processor)


def write(model, tokenizer, digits: str, options: WriteOptions = WriteOptions(), *, prompt: str = "",
          topic: str = "", ngrams: NgramModel | None = None, progress=None) -> PilishText:
    """Make `model` write Pilish that spells `digits` under `options.rules`, continuing `prompt`.

    The prompt's own words must spell the first digits. `topic` is text the model reads first, to
    say what the Pilish is about ("Once upon a time, there was a dragon named Max."): it spells no
    digits and is not part of the returned text; it stays pinned at the start of every window, so a
    long text keeps its subject. `ngrams` (a `pilish.ngram.NgramModel`) is mixed with the model's
    distribution at `options.ngram_weight`. `progress`, if given, is a tqdm-like object whose `update(n)` hears of every n digits spelled.
    """
    words, prompt_ids, spelled = check_prompt(tokenizer, prompt, digits, options.rules)
    topic_ids = split_words(tokenizer, topic)[1] if topic.strip() else []
    processors, processor, stopping = make_processors(tokenizer, digits, options, ngrams, spelled.matched)
    windows = Windows(model, tokenizer, options, topic_ids, prompt_ids)
    if progress is not None and spelled.matched:
        progress.update(spelled.matched)
    generated, position = [], spelled.matched
    while True:
        window_ids = windows.ids(generated)
        processor.restart(window_ids.shape[1], position)
        if isinstance(processors[0], WritingPrior):
            processors[0].restart(windows.text_ids + generated, window_ids.shape[1])
        new, written = windows.generate(window_ids, processors, stopping)
        before, position = position, int(processor.positions(written)[0])
        if not new or (before == position < len(digits) and len(new) > 2):
            # at most two marks stand between words, so three new tokens spell a digit: a bug otherwise
            raise RuntimeError(f"no progress at digit {position} of {len(digits)}: the Pilish processor is broken")
        generated += new
        if progress is not None:
            progress.update(position - before)
        if bool(stopping(written)[0]) or new[-1] == tokenizer.eos_token_id:
            break
    generated = [token for token in generated if token != tokenizer.eos_token_id]
    text = finish_sentence(detokenize(tokenizer, generated, words_before=words))
    return PilishText(text, generated, list(prompt_ids), spelled.matched, verify(text, digits, options.rules),
                      list(topic_ids))


class Windows:
    """The sliding context of one text: which ids each call to `generate` reads, and the call."""

    def __init__(self, model, tokenizer, options: WriteOptions, topic_ids: list[int], prompt_ids: list[int]):
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.context_length = context_window(model, options.context_length)
        if self.context_length < 4:
            raise PilishError(f"a context window of {self.context_length} tokens is too short to write in; "
                              f"use 4 or more")
        self.new_per_window = max(1, self.context_length // 4)  # then keep 3/4 of a context when it slides
        # A story starts after <|endoftext|>, as in training. With a topic, <|endoftext|> and the topic
        # are pinned: every window starts with them and slides only over the Pilish.
        eot = tokenizer.eos_token_id
        self.pinned = [eot, *topic_ids] if topic_ids else []
        self.text_ids = [*prompt_ids] if topic_ids else [eot, *prompt_ids]
        if len(self.pinned) > (self.context_length - self.new_per_window) // 2:
            raise PilishError(f"the topic is {len(topic_ids)} tokens long; keep it under half of the "
                              f"{self.context_length - self.new_per_window} tokens of context the model reads")

    def ids(self, generated: list[int]) -> torch.LongTensor:
        """[1, length]: the window that continues the text after `generated`."""
        keep = self.context_length - self.new_per_window - len(self.pinned)
        return torch.tensor([self.pinned + (self.text_ids + generated)[-keep:]], device=self.model.device)

    def generate(self, window_ids: torch.LongTensor, processors: list, stopping) -> tuple[list[int], torch.LongTensor]:
        """(the first row's new tokens, up to its end token if any; every row up to there)."""
        eot = self.tokenizer.eos_token_id
        output = self.model.generate(
            window_ids, attention_mask=torch.ones_like(window_ids), max_new_tokens=self.new_per_window,
            logits_processor=processors, stopping_criteria=[stopping], eos_token_id=eot,
            pad_token_id=self.tokenizer.pad_token_id, use_cache=True,
            **shared_prefill(self.model, window_ids, self.options.rows), **self.options.generate_kwargs())
        new = output[0, window_ids.shape[1]:].tolist()
        if eot in new:  # the end token closes the text; what follows is padding
            new = new[:new.index(eot) + 1]
        return new, output[:, :window_ids.shape[1] + len(new)]


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
