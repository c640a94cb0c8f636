"""Token kinds and letter counting: what a token is to the Pilish, and how many letters it has.

Tokens are whole words or single punctuation marks, so "the length of the next word" is simply
"the letters in the next token". A token may start with the tokenizer's SPACE_MARK (▁, "a space
comes before"); it is no letter, and every test of what a token is looks at the text after it.
Torch-free.
"""

from __future__ import annotations

import re
import unicodedata

from lmkit.text import SPACE_MARK

# Punctuation the generator may put between words. Anything else made of no letters (digits,
# symbols, special tokens) would either read oddly or confuse the verifier, so it is never offered.
PUNCTUATION = ".,!?;:\"'"
# The marks a finished text may end on.
CLOSING_MARKS = (".", "!", "?")
# Quotes stand only after another mark (`said, "go!" she`), the way the stories write dialogue;
# every other mark follows a word. So at most two marks stand between words and a text of n digits
# has at most about 3n tokens.
QUOTES = "\"'"

# A word in free text: letters, possibly joined by apostrophes or hyphens ("don't", "well-known";
# the Unicode hyphens U+2010 and U+2011 join like "-"). [^\W\d_] is "a word character that is
# neither a digit nor an underscore", i.e. a letter. Match it against `words_in`'s NFC text.
WORD_RE = re.compile(r"[^\W\d_]+(?:['’\u2010\u2011-][^\W\d_]+)*")

# Kinds of token, for what punctuation may follow them.
WORD, MARK, OTHER = 0, 1, 2


def words_in(text: str) -> list[str]:
    """The words of `text` (WORD_RE) in composed form (NFC): "o" plus a combining accent is the one
    letter "ó", as a reader counts it, not a break between two words."""
    return WORD_RE.findall(unicodedata.normalize("NFC", text))


def letters_in(word: str) -> int:
    """Number of letters in `word`; apostrophes, hyphens, digits, punctuation and ▁ count 0."""
    return sum(1 for char in word if char.isalpha())


def token_text(token: str) -> str:
    """A token's text without the space mark in front: "▁don't" -> "don't", '▁"' -> '"'."""
    return token[len(SPACE_MARK):] if token.startswith(SPACE_MARK) else token


def is_word_token(token: str) -> bool:
    """A token the generator may use as a word: one WORD_RE word and nothing else, so the verifier
    sees exactly the letters the generator counted."""
    return WORD_RE.fullmatch(token_text(token)) is not None and letters_in(token) > 0


def is_quote_token(token: str) -> bool:
    text = token_text(token)
    return text != "" and all(char in QUOTES for char in text)


def is_punctuation_token(token: str) -> bool:
    """A mark the generator may put between words. A quote may carry the space mark (an opening
    quote does); any other mark after a space ("wait . what") would read oddly, so it is no mark."""
    text = token_text(token)
    return (text != "" and all(char in PUNCTUATION for char in text)
            and (text == token or is_quote_token(token)))
