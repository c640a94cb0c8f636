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

import time

from common import EOT, PAD, SPECIAL_TOKENS, UNK, UserError, join_tokens, load_stories, run_script

# The data set's text came from GPT-3.5 as UTF-8 and was partly decoded as Windows-1252 somewhere
# along the way, so curly quotes arrive as "â€œ" and friends. Longest patterns first: the closing
# quote's third byte (0x9d) is undefined in Windows-1252 and is often lost, leaving a bare "â€".
MOJIBAKE = [
    ("â€œ", '"'), ("â€\x9d", '"'), ("â€™", "'"), ("â€˜", "'"),
    ("â€”", " - "), ("â€“", " - "), ("â€¦", "..."), ("â€", '"'),
]
TYPOGRAPHY = [("“", '"'), ("”", '"'), ("„", '"'), ("‘", "'"), ("’", "'"), ("—", " - "), ("–", " - "), ("…", "...")]

# A word is letters joined by apostrophes or hyphens (didn't, lily's, ice-cream); a number is a
# token; every other visible character is a token of its own. Applied after whitespace splitting.
WORD_PATTERN = r"[A-Za-z]+(?:['-][A-Za-z]+)*|[0-9]+|[^\sA-Za-z0-9]"


def build_normalizer(lowercase=True):
    from tokenizers import normalizers
    steps = [normalizers.Replace(bad, good) for bad, good in MOJIBAKE + TYPOGRAPHY]
    steps += [normalizers.NFKD(), normalizers.StripAccents()]  # café -> cafe
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def build_tokenizer(lowercase=True):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = build_normalizer(lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"),
    ])
    # WordPiece's decoder joins with spaces and removes the space before . , ! ? -- as close as
    # tokenizer.json gets; common.detokenize also places quotes.
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tokenizer


def wrap_for_transformers(tokenizer):
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token=UNK, pad_token=PAD, eos_token=EOT, bos_token=EOT,
        clean_up_tokenization_spaces=True)


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
    if not 0 <= config.HELD_OUT < 1:
        raise UserError("HELD_OUT is a share of the stories: 0 <= HELD_OUT < 1")
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
    print(f"example: {example} -> {join_tokens(tokenizer.encode(example).tokens)}")
    print(f"saved to {config.TOKENIZER_DIR}/ -- next: python train_model.py --tokenizer_dir={config.TOKENIZER_DIR}")


if __name__ == "__main__":
    run_script(main, globals())
