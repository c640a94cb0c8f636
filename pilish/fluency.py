"""How much a text reads like the stories: a measure no model can flatter.

A language model's likelihood rewards what that model likes (a beam's Pilish scores "better" than
real text under the model that wrote it). These counts instead compare a text with real stories:

  * bigrams / trigrams: the share of the text's word 2-grams and 3-grams that occur in a reference
    text (e.g. the training data). Real held-out stories score about 86% / 56% against the sample.
  * immediate repeats: word bigrams that are one word twice with no mark between ("a a"; "Tom.
    Tom" is how stories write), as a share of all word bigrams.
  * good sentence ends: the share of sentences (words up to . ! ?) whose last two words end a
    sentence somewhere in the reference ("she smiled." yes, "and it." no).
  * words per sentence: words per closing mark. The stories' sentences are short (about 9 words);
    a text that seldom ends one runs on ("he looked under the water suddenly something amazing ...").
  * bad quotes: quote marks that do not read as dialogue. An opening quote must start a sentence or
    follow "," or ":" after a word that introduces speech in the reference (`said, "`); a closing
    quote must follow . ! ? or "," (`go!"`). `finally," that's` and `said," i'm? "i` fail.

Words are lowercased runs of letters, joined by apostrophes ("don't"); punctuation is not a word,
so "said. she" is the bigram (said, she). The reference keeps its stories apart: no n-gram spans
two stories. Torch-free and model-free; functions take plain strings and word lists.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

# The data set's mojibake and curly forms of quotes and apostrophes, read as the plain ones.
_QUOTE_FORMS = ("â€œ", "â€\x9d", "â€", "“", "”")
_APOSTROPHE_FORMS = ("â€™", "’", "‘", "â€˜")

# A word, a closing mark, another mark, or a double quote: what the measures look at.
_TOKEN_RE = re.compile(r"[a-z]+(?:'[a-z]+)*|[.!?]|[,:;]|\"")
CLOSING = ".!?"
SPEECH_MARKS = ",:"  # `said, "` and `said: "` introduce dialogue


def normalize(text: str) -> str:
    """Lowercased, with curly and mojibake quotes and apostrophes made plain."""
    for form in _APOSTROPHE_FORMS:
        text = text.replace(form, "'")
    for form in _QUOTE_FORMS:
        text = text.replace(form, '"')
    return text.lower()


def tokens(text: str) -> list[str]:
    """The words, marks and double quotes of `text`, normalized ('Lily said, "Go!"' ->
    ['lily', 'said', ',', '"', 'go', '!', '"'])."""
    return _TOKEN_RE.findall(normalize(text))


def words(text: str) -> list[str]:
    """The words of `text`, lowercased, without punctuation."""
    return [token for token in tokens(text) if token[0].isalpha()]


def ngrams(word_list: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(word_list[i:i + n]) for i in range(len(word_list) - n + 1)]


@dataclass
class Reference:
    """What the measure compares a text with, collected from real stories."""

    bigrams: set = field(default_factory=set)
    trigrams: set = field(default_factory=set)
    sentence_final: set = field(default_factory=set)  # last two words of a sentence (before . ! ?)
    speech_words: set = field(default_factory=set)  # words that open a quote (`said, "`) at least twice
    words: int = 0


def build_reference(stories: Iterable[str]) -> Reference:
    """A Reference from stories given one per string (n-grams never span two of them)."""
    reference = Reference()
    introduces = Counter()
    for story in stories:
        story_tokens = tokens(story)
        story_words = [token for token in story_tokens if token[0].isalpha()]
        reference.words += len(story_words)
        reference.bigrams.update(ngrams(story_words, 2))
        reference.trigrams.update(ngrams(story_words, 3))
        reference.sentence_final.update(sentence_ends(story_tokens))
        for opening in _opening_quotes(story_tokens):
            if opening >= 2 and story_tokens[opening - 1] in SPEECH_MARKS and story_tokens[opening - 2][0].isalpha():
                introduces[story_tokens[opening - 2]] += 1
    # twice: one story's `mom, "` is not yet a way the stories introduce speech
    reference.speech_words = {word for word, count in introduces.items() if count >= 2}
    return reference


def read_stories(path) -> list[str]:
    """The stories of a TinyStories .txt or .txt.gz file, read as every script reads them
    (lmkit.data.stories_in_txt: separated by <|endoftext|> lines, or by blank lines)."""
    from lmkit.data import stories_in_txt
    return [row["text"] for row in stories_in_txt([path])]


def sentence_ends(text_tokens: list[str]) -> list[tuple[str, ...]]:
    """The last two words of each sentence (the words before a closing mark; one for a one-word
    sentence). Two words, because almost any single word ends some sentence ("and it." does not)."""
    ends, sentence = [], []
    for token in text_tokens:
        if token[0].isalpha():
            sentence.append(token)
        elif token in CLOSING:
            if sentence:
                ends.append(tuple(sentence[-2:]))
            sentence = []
    return ends


def _opening_quotes(text_tokens: list[str]) -> list[int]:
    """Indices of the quotes that open (the 1st, 3rd, ... of a text)."""
    quotes = [i for i, token in enumerate(text_tokens) if token == '"']
    return quotes[::2]


def bad_quotes(text_tokens: list[str], reference: Reference) -> int:
    """Quote marks in `text_tokens` that do not read as dialogue (see the module docstring)."""
    quotes = [i for i, token in enumerate(text_tokens) if token == '"']
    bad = 0
    for number, i in enumerate(quotes):
        before = text_tokens[i - 1] if i >= 1 else None
        if number % 2 == 0:  # opening
            starts_sentence = before is None or before in CLOSING
            introduced = before is not None and before in SPEECH_MARKS and text_tokens[i - 2] in reference.speech_words
            bad += not (starts_sentence or introduced)
        else:  # closing
            bad += before is None or before not in CLOSING + ","
    return bad


@dataclass
class Fluency:
    """The counts behind the measure for one text (or several, summed)."""

    bigrams: int = 0
    bigram_hits: int = 0
    trigrams: int = 0
    trigram_hits: int = 0
    repeats: int = 0  # bigrams that are one word twice, no mark between
    sentences: int = 0
    good_ends: int = 0
    quotes: int = 0
    bad_quotes: int = 0
    words: int = 0

    def __add__(self, other: "Fluency") -> "Fluency":
        return Fluency(*(a + b for a, b in zip(vars(self).values(), vars(other).values())))

    @property
    def bigram_share(self) -> float:
        return self.bigram_hits / self.bigrams if self.bigrams else float("nan")

    @property
    def trigram_share(self) -> float:
        return self.trigram_hits / self.trigrams if self.trigrams else float("nan")

    @property
    def repeat_share(self) -> float:
        return self.repeats / self.bigrams if self.bigrams else float("nan")

    @property
    def good_end_share(self) -> float:
        return self.good_ends / self.sentences if self.sentences else float("nan")

    @property
    def words_per_sentence(self) -> float:
        """Words per closing mark (a text with none is one sentence)."""
        return self.words / max(self.sentences, 1) if self.words else float("nan")

    @property
    def bad_quote_share(self) -> float:
        return self.bad_quotes / self.quotes if self.quotes else 0.0


def measure(text: str, reference: Reference) -> Fluency:
    """The fluency counts of `text` against `reference`."""
    text_tokens = tokens(text)
    text_words = [token for token in text_tokens if token[0].isalpha()]
    bigrams, trigrams = ngrams(text_words, 2), ngrams(text_words, 3)
    ends = sentence_ends(text_tokens)
    return Fluency(
        bigrams=len(bigrams), bigram_hits=sum(b in reference.bigrams for b in bigrams),
        trigrams=len(trigrams), trigram_hits=sum(t in reference.trigrams for t in trigrams),
        repeats=sum(a == b and a[0].isalpha() for a, b in zip(text_tokens, text_tokens[1:])),
        sentences=len(ends), good_ends=sum(word in reference.sentence_final for word in ends),
        quotes=text_tokens.count('"'), bad_quotes=bad_quotes(text_tokens, reference), words=len(text_words))
