"""Train a word-level tokenizer on TinyStories: every token is a whole word or one punctuation mark.

    python train_tokenizer.py                                   # the hub data set (needs network)
    python train_tokenizer.py --dataset=sample                  # the sample bundled in data/ (offline)
    python train_tokenizer.py --dataset=TinyStories-train.txt   # a local copy (.txt or .txt.gz)
    python train_tokenizer.py --vocab_size=20000 --tokenizer_dir=tok20k

Writes TOKENIZER_DIR (tokenizer.json + config), loadable with
`transformers.AutoTokenizer.from_pretrained(TOKENIZER_DIR)`. Next: train_model.py.
"""

DATASET = "roneneldan/TinyStories"  # hub name, "sample" (bundled), or a local .txt/.txt.gz/.jsonl/... file or folder
TOKENIZER_DIR = "tokenizer"  # where the tokenizer is saved
VOCAB_SIZE = 30000  # words in the vocabulary, special tokens included
MIN_FREQUENCY = 1  # a word must appear this often to get a token of its own
LOWERCASE = True  # fold case: "Lily" and "lily" are one word
MAX_STORIES = 0  # train on the first N stories only (0 = all of them)
HELD_OUT = 0.01  # share of stories kept out of training to measure the [UNK] rate
OVERWRITE = False  # replace a different tokenizer in TOKENIZER_DIR, or write into a model's folder

import time

from pathlib import Path

from common import (EOT, PAD, SPACE_MARK, SPECIAL_TOKENS, UNK, UserError, at_least, check_writable, load_stories,
                    run_script, tokenizer_fingerprint, vocabulary_fingerprint, within)

# The data set's text came from GPT-3.5 as UTF-8 and was partly decoded as Windows-1252 somewhere
# along the way, so curly quotes arrive as "â€œ" and friends. Longest patterns first: the closing
# quote's third byte (0x9d) is undefined in Windows-1252 and is often lost, leaving a bare "â€".
MOJIBAKE = [
    ("â€œ", '"'), ("â€\x9d", '"'), ("â€™", "'"), ("â€˜", "'"),
    ("â€”", " - "), ("â€“", " - "), ("â€¦", "..."), ("â€", '"'),
]
TYPOGRAPHY = [("“", '"'), ("”", '"'), ("„", '"'), ("‘", "'"), ("’", "'"), ("—", " - "), ("–", " - "), ("…", "...")]

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
    steps = [normalizers.Replace(bad, good) for bad, good in MOJIBAKE + TYPOGRAPHY]
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
    text-generation pipeline prints) reads right; common.detokenize strips it for the scripts.
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


def main(config):
    from tokenizers import trainers

    if config.VOCAB_SIZE <= len(SPECIAL_TOKENS):
        raise UserError(f"VOCAB_SIZE must be larger than the {len(SPECIAL_TOKENS)} special tokens")
    if not config.TOKENIZER_DIR.strip():
        raise UserError("TOKENIZER_DIR is empty: give a folder")
    within(config, "HELD_OUT", 0, 1, high_open=True)
    at_least(config, 0, "MIN_FREQUENCY", "MAX_STORIES")
    folder = Path(config.TOKENIZER_DIR)
    if (folder / "config.json").is_file() and not config.OVERWRITE:  # a model's folder: its tokenizer is its own
        raise UserError(f"{folder} holds a model, whose tokenizer must stay the one it was trained with: choose "
                        f"another TOKENIZER_DIR (or pass --overwrite=true to replace it anyway)")
    check_writable(folder, "TOKENIZER_DIR")
    started = time.perf_counter()
    stories = load_stories(config.DATASET, split="train")
    if config.MAX_STORIES > 0:
        stories = stories.select(range(min(config.MAX_STORIES, len(stories))))
    held_out_count = int(len(stories) * config.HELD_OUT)
    train_count = len(stories) - held_out_count
    if train_count < 1:
        raise UserError(f"{config.DATASET} has too few stories ({len(stories)}) to train a tokenizer")

    words_read = 0

    def batches():
        nonlocal words_read
        for batch in stories.select(range(train_count)).iter(batch_size=1000):
            words_read += sum(len(text.split()) for text in batch["text"])
            yield batch["text"]

    tokenizer = build_tokenizer(config.LOWERCASE)
    trainer = trainers.WordLevelTrainer(
        vocab_size=config.VOCAB_SIZE, min_frequency=config.MIN_FREQUENCY,
        special_tokens=SPECIAL_TOKENS, show_progress=True)
    tokenizer.train_from_iterator(batches(), trainer, length=(train_count + 999) // 1000)
    if (folder / "tokenizer.json").is_file() and not config.OVERWRITE:
        # models trained with the old one keep their own copy, but a run resumed in a MODEL_DIR made
        # with it would be refused: say so rather than replace it silently
        if tokenizer_fingerprint(folder) != vocabulary_fingerprint(tokenizer.get_vocab(with_added_tokens=True)):
            raise UserError(f"{folder} holds another tokenizer (a different vocabulary); choose another "
                            f"TOKENIZER_DIR, or pass --overwrite=true to replace it")
    wrap_for_transformers(tokenizer).save_pretrained(config.TOKENIZER_DIR)
    elapsed = time.perf_counter() - started

    print(f"read {train_count:,} stories, {words_read:,} words from {config.DATASET} in {elapsed:.1f} s")
    vocab_note = "" if tokenizer.get_vocab_size() >= config.VOCAB_SIZE else \
        f" (the data has fewer distinct words than VOCAB_SIZE={config.VOCAB_SIZE:,})"
    print(f"vocabulary: {tokenizer.get_vocab_size():,} tokens{vocab_note}")
    if held_out_count:
        held_out = stories.select(range(train_count, len(stories)))["text"][:20000]
        rate, words = unk_rate(tokenizer, held_out)
        print(f"[UNK] rate on {len(held_out):,} held-out stories: {rate:.2%} of {words:,} words")
    example = 'Lily\'s mom said, "Don\'t go!"'
    tokens = tokenizer.encode(example).tokens
    print(f"example: {example} -> {' '.join(tokens)} -> {tokenizer.decoder.decode(tokens).lstrip()}")
    print(f"saved to {config.TOKENIZER_DIR}/ -- next: python train_model.py --tokenizer_dir={config.TOKENIZER_DIR}")


if __name__ == "__main__":
    run_script(main, globals())
