"""The Markov-chain peer: Pilish from a word trigram Markov chain of the training stories, no neural model.

    python -m bench.markov_pilish --model_dir=model                        # 1,000 digits of pi, ~10 s
    python -m bench.markov_pilish --model_dir=model --num_digits=100 --output_file=markov.txt

The no-model approach people reach for, and the peer our Pilish has to beat (issue 20): the trigrams
of TRAIN_FILE's tokens, cut by MODEL_DIR's tokenizer into the same words and marks our texts have,
scored with stupid backoff (Brants et al. 2007: the trigram's relative frequency, else BACKOFF times
the bigram's, else BACKOFF² times the word's; an n-gram seen fewer than MIN_COUNT times counts as
unseen: one story's phrase is not yet how the stories go, and the chain would copy it) and searched with NUM_BEAMS beams under the same
constraint as ours: each word's letters spell the next digit, marks spell nothing and stand between
words (a quote only after another mark). bench/quality.py writes it as a row of its table.
"""

MODEL_DIR = "model"  # its tokenizer cuts the stories into words and marks (the model itself is not used)
TRAIN_FILE = ""  # the stories to count ("" = the bundled sample, data/tinystories-sample/train.txt.gz)
DIGITS = "pi"  # pi, e, phi, sqrt2, or a literal string of digits
NUM_DIGITS = 1000  # how many digits to spell
NUM_BEAMS = 16  # hypotheses kept after each digit
BACKOFF = 0.4  # stupid backoff's factor for a shorter context (the paper's)
MIN_COUNT = 2  # n-grams seen fewer times back off to a shorter context (1 = use every n-gram)
OUTPUT_FILE = ""  # also write the text here

import heapq
import math
import time
from collections import Counter, defaultdict
from functools import lru_cache

from lmkit.settings import run_script
from pilish.fluency import read_stories
from pilish.rules import PilishError, digits_of_word, format_verification, get_digits, verify

MARK, QUOTE = "mark", "quote"  # the classes of the marks; a word's class is the digit it spells


class MarkovChain:
    """Token trigram counts of stories, and the likeliest tokens of a class after two tokens."""

    def __init__(self, tokenizer, stories, backoff: float = BACKOFF, min_count: int = MIN_COUNT,
                 candidates: int = 16):
        from pilish.vocabulary import tables_for
        tables = tables_for(tokenizer)
        self.start = tokenizer.eos_token_id  # twice before every story, so it is a context but never a candidate
        self.backoff, self.min_count, self.candidates = backoff, min_count, candidates
        self.classes = {}  # token id: the digit a word spells, MARK or QUOTE; other tokens are never written
        for token, (letters, is_word, is_mark, is_quote) in enumerate(zip(
                tables.letters.tolist(), tables.is_word.tolist(), tables.is_mark.tolist(), tables.is_quote.tolist())):
            spelled = digits_of_word(letters, "basic") if is_word else None
            kind = spelled if spelled else MARK if is_mark else QUOTE if is_quote else None
            if kind is not None:
                self.classes[token] = kind
        self.unigrams, self.bigrams, self.trigrams = Counter(), Counter(), Counter()
        stories = list(stories)
        for first in range(0, len(stories), 1000):
            batch = tokenizer.backend_tokenizer.encode_batch(stories[first:first + 1000], add_special_tokens=False)
            for encoding in batch:
                ids = [self.start, self.start, *encoding.ids]
                self.unigrams.update(ids[2:])
                self.bigrams.update(zip(ids[1:], ids[2:]))
                self.trigrams.update(zip(ids, ids[1:], ids[2:]))
        self.total = sum(self.unigrams.values())
        # contexts' counts (as contexts), and their followers of each class, likeliest first
        self.context2, self.context1 = Counter(), Counter()
        followers3, followers2, followers1 = defaultdict(list), defaultdict(list), defaultdict(list)
        for (a, b, c), count in self.trigrams.items():
            self.context2[a, b] += count
            if c in self.classes and count >= min_count:
                followers3[a, b, self.classes[c]].append((count, c))
        for (b, c), count in self.bigrams.items():
            self.context1[b] += count
            if c in self.classes and count >= min_count:
                followers2[b, self.classes[c]].append((count, c))
        for c, count in self.unigrams.items():
            if c in self.classes:
                followers1[self.classes[c]].append((count, c))
        self.followers = [{key: [c for _, c in heapq.nlargest(candidates, found)] for key, found in table.items()}
                          for table in (followers3, followers2, followers1)]
        self.best = lru_cache(maxsize=None)(self._best)

    def log_score(self, a: int, b: int, c: int) -> float:
        """Stupid backoff's log score of `c` after `a b`."""
        if self.trigrams.get((a, b, c), 0) >= self.min_count:
            return math.log(self.trigrams[a, b, c] / self.context2[a, b])
        if self.bigrams.get((b, c), 0) >= self.min_count:
            return math.log(self.backoff * self.bigrams[b, c] / self.context1[b])
        return math.log(self.backoff ** 2 * max(self.unigrams[c], 1) / self.total)

    def _best(self, a: int, b: int, kind: str) -> list[tuple[float, int]]:
        """[(log score, token)]: the likeliest tokens of class `kind` after `a b`, at most `candidates`."""
        tokens = {*self.followers[0].get((a, b, kind), ()), *self.followers[1].get((b, kind), ()),
                  *self.followers[2].get(kind, ())}
        return heapq.nlargest(self.candidates, ((self.log_score(a, b, c), c) for c in tokens))


def markov_pilish(chain: MarkovChain, digits: str, num_beams: int = NUM_BEAMS) -> list[int]:
    """The token ids of the likeliest Pilish of `digits` (basic rules) the beam finds under `chain`.

    Every hypothesis spells one more digit per step: a word, or one or two marks and then a word
    (`home . she`, `said , " go`), so the hypotheses compared always stand at the same digit. As in
    our texts, no word follows itself, even with marks between."""
    # a hypothesis: (score, its last two tokens, (its tokens this step, the hypothesis it extends))
    beams = [(0.0, (chain.start, chain.start), None)]
    for position, digit in enumerate(digits):
        expansions = []
        for score, (a, b), path in beams:
            steps = [(score, a, b, ())]  # (score, context, marks so far) before the word
            if position > 0:  # marks stand between words: a mark after a word, a quote after a mark
                for mark_score, mark in chain.best(a, b, MARK)[:4]:
                    steps.append((score + mark_score, b, mark, (mark,)))
                    for quote_score, quote in chain.best(b, mark, QUOTE)[:2]:
                        steps.append((score + mark_score + quote_score, mark, quote, (mark, quote)))
            for before, x, y, marks in steps:
                expansions += [(before + word_score, (y, word), ((*marks, word), path))
                               for word_score, word in chain.best(x, y, digit) if word != b]  # never "a a"
        if not expansions:
            raise PilishError(f"the stories have no word that spells {digit}, digit {position + 1}")
        beams = heapq.nlargest(num_beams, expansions, key=lambda hypothesis: hypothesis[0])
    tokens, path = [], beams[0][2]
    while path is not None:
        tokens[:0], path = path
    return tokens


def markov_text(chain: MarkovChain, tokenizer, digits: str, num_beams: int = NUM_BEAMS) -> tuple[list[int], str]:
    """(token ids, text ending a sentence) of `markov_pilish`."""
    from lmkit.text import detokenize
    from pilish.writing import finish_sentence
    ids = markov_pilish(chain, digits, num_beams)
    return ids, finish_sentence(detokenize(tokenizer, ids))


def main(config):
    from bench.support import data_file
    from lmkit.folders import load_tokenizer

    digits = get_digits(config.DIGITS, config.NUM_DIGITS)
    tokenizer = load_tokenizer(config.MODEL_DIR)
    started = time.perf_counter()
    chain = MarkovChain(tokenizer, read_stories(data_file(config.TRAIN_FILE, "train")), config.BACKOFF,
                        config.MIN_COUNT)
    built = time.perf_counter()
    text = markov_text(chain, tokenizer, digits, config.NUM_BEAMS)[1]
    print(text)
    print(format_verification(verify(text, digits, "basic"), config.DIGITS))
    print(f"chain built in {built - started:.1f} s, text written in {time.perf_counter() - built:.1f} s")
    if config.OUTPUT_FILE:
        from lmkit.files import write_text
        write_text(config.OUTPUT_FILE, text + "\n")


if __name__ == "__main__":
    run_script(main, globals(), errors=(PilishError,))
