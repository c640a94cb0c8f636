"""Building the word-level tokenizer: every token is a whole word or one punctuation mark.

Built the way the `tokenizers` quicktour builds one: a WordLevel model, a normalizer that repairs
the data set's defects and marks each space, a pre-tokenizer that cuts words and marks, and a
decoder that puts the spaces back. train_tokenizer.py trains it; `wrap_for_transformers` makes it
a tokenizer every Hugging Face tool loads.
"""

from lmkit.text import EOT, PAD, SPACE_MARK, UNK

# The data set's text came from GPT-3.5 as UTF-8 and was partly decoded as Windows-1252 somewhere
# along the way, so curly quotes arrive as "â€œ" and friends. Longest patterns first: the closing
# quote's third byte (0x9d) is undefined in Windows-1252 and is often lost, leaving a bare "â€".
MOJIBAKE = [
    ("â€œ", '"'), ("â€\x9d", '"'), ("â€™", "'"), ("â€˜", "'"),
    ("â€”", " - "), ("â€“", " - "), ("â€¦", "..."), ("â€", '"'),
]
TYPOGRAPHY = [("“", '"'), ("”", '"'), ("„", '"'), ("‘", "'"), ("’", "'"), ("—", " - "), ("–", " - "), ("…", "..."),
              ("\u2010", "-"), ("\u2011", "-")]  # the Unicode hyphens join words as "-" does
# Characters that show nothing: a byte-order mark at the start of a file (or pasted mid-text) and a
# zero-width space would otherwise become words of their own, or glue to the word after them.
INVISIBLE = [("\ufeff", ""), ("\u200b", "")]

# A word is letters joined by apostrophes or hyphens (didn't, lily's, ice-cream); a number is a
# token; every other visible character is a token of its own. Each may carry SPACE_MARK in front.
WORD_PATTERN = r"[A-Za-z]+(?:['-][A-Za-z]+)*|[0-9]+|[^\sA-Za-z0-9]"
_WORD_START = r"(?=[A-Za-z0-9])"
# Where the marking normalizer puts a space that the text lacks, so that every word and number
# follows one: after a mark other than an apostrophe or hyphen ('"go' -> '" go', '(ok' -> '( ok');
# after an apostrophe or hyphen that joins nothing (" 'hi'" -> " ' hi'"); between letters and digits.
MISSING_SPACE = "|".join([
    r"(?<=[^\sA-Za-z0-9'-])" + _WORD_START,
    r"(?<=[^A-Za-z0-9]['-])" + _WORD_START,
    r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])",
])
# Marks after which the decoder removes the word's space: opening quotes (a quote after a space)
# and brackets. A quote with no space before it closes ("go!" tom), so it is left alone.
OPENING_MARKS = [SPACE_MARK + '"', SPACE_MARK + "'", "("]


def build_normalizer(lowercase=True):
    """The readable normalization: the data set's defects repaired, accents stripped, case folded."""
    from tokenizers import normalizers
    steps = [normalizers.Replace(bad, good) for bad, good in INVISIBLE + MOJIBAKE + TYPOGRAPHY]
    steps += [normalizers.NFKD(), normalizers.StripAccents()]  # café -> cafe
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def build_marking_normalizer(lowercase=True):
    """build_normalizer, then the space marks: one space before every word, each space a SPACE_MARK.

    "Lily's mom said, \"Don't go!\"" -> "▁lily's▁mom▁said,▁\"▁don't▁go!\"". A word always carries the
    mark (one vocabulary entry per word); a mark carries it when a space precedes it, which is what
    tells an opening quote from a closing one.
    """
    from tokenizers import Regex, normalizers
    return normalizers.Sequence([
        build_normalizer(lowercase),
        normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(),
        normalizers.Prepend(" "),  # the first word follows a space too: one form for every word
        normalizers.Replace(Regex(MISSING_SPACE), " "),
        normalizers.Replace(" ", SPACE_MARK),
    ])


def build_decoder():
    """Tokens back to English: a SPACE_MARK is a space, except between an opening mark and its word.

    The text keeps the space before its first word, so `prompt + decode(new tokens)` (what the
    text-generation pipeline prints) reads right; lmkit.text.detokenize strips it for the scripts.
    """
    from tokenizers import decoders
    return decoders.Sequence([
        decoders.Replace(UNK, SPACE_MARK + UNK),  # an unknown word reads as a word, not glued
        decoders.Fuse(),
        *[decoders.Replace(mark + SPACE_MARK, mark) for mark in OPENING_MARKS],
        decoders.Replace(SPACE_MARK, " "),
    ])


def build_tokenizer(lowercase=True):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = build_marking_normalizer(lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.Split(
        Regex(f"{SPACE_MARK}?(?:{WORD_PATTERN})"), behavior="isolated")
    tokenizer.decoder = build_decoder()
    return tokenizer


def wrap_for_transformers(tokenizer):
    from transformers import PreTrainedTokenizerFast
    # no clean-up: the decoder places every space itself (transformers' clean-up would glue " 'so")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token=UNK, pad_token=PAD, eos_token=EOT, bos_token=EOT,
        clean_up_tokenization_spaces=False)


def unk_rate(tokenizer, texts):
    """Share of the words (tokens with a letter) in `texts` that the vocabulary lacks, and their count."""
    unk_id = tokenizer.token_to_id(UNK)
    words = unknown = 0
    for text, encoding in zip(texts, tokenizer.encode_batch(texts)):
        for token_id, (start, end) in zip(encoding.ids, encoding.offsets):
            if any(c.isalpha() for c in text[start:end]):
                words += 1
                unknown += token_id == unk_id
    return (unknown / words if words else 0.0), words
