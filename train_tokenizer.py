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

from lmkit import files
from lmkit.data import HUB_DATASET, load_stories
from lmkit.files import folder_lock
from lmkit.folders import tokenizer_fingerprint, vocabulary_fingerprint
from lmkit.settings import UserError, at_least, check_writable, next_command, run_script, within
from lmkit.text import SPECIAL_TOKENS
from lmkit.tokenizer import build_tokenizer, unk_rate, wrap_for_transformers


def main(config):
    if config.VOCAB_SIZE <= len(SPECIAL_TOKENS):
        raise UserError(f"VOCAB_SIZE must be larger than the {len(SPECIAL_TOKENS)} special tokens")
    for name in ("TOKENIZER_DIR", "DATASET"):  # Path("") is the current folder
        if not getattr(config, name).strip():
            raise UserError(f"{name} is empty: give a path" + (" (or sample, or a hub name)" if name == "DATASET" else ""))
    within(config, "HELD_OUT", 0, 1, high_open=True)
    within(config, "VOCAB_SIZE", len(SPECIAL_TOKENS) + 1, 2**31 - 1)  # the trainer counts in 32 or 64 bits
    within(config, "MIN_FREQUENCY", 0, 2**31 - 1)
    at_least(config, 0, "MAX_STORIES")
    folder = Path(config.TOKENIZER_DIR)
    if (folder / "config.json").is_file() and not config.OVERWRITE:  # a model's folder: its tokenizer is its own
        raise UserError(f"{folder} holds a model, whose tokenizer must stay the one it was trained with: choose "
                        f"another TOKENIZER_DIR (or pass --overwrite=true to replace it anyway)")
    check_writable(folder, "TOKENIZER_DIR")
    with folder_lock(folder, "TOKENIZER_DIR"):  # one run writes a tokenizer folder at a time
        train_and_save(config, folder)


def train_and_save(config, folder):
    from tokenizers import trainers

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
    if not any(char.isalpha() for token in tokenizer.get_vocab() if token not in SPECIAL_TOKENS for char in token):
        raise UserError(f"no word of {config.DATASET} occurs MIN_FREQUENCY={config.MIN_FREQUENCY} times: the "
                        f"vocabulary would hold only marks and special tokens. Lower MIN_FREQUENCY or give more text")
    files.save_pretrained(wrap_for_transformers(tokenizer), folder)  # each file renamed into place whole
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
    print(f"saved to {config.TOKENIZER_DIR}/ -- next: " + next_command(
        "train_model.py", DATASET=(config.DATASET, HUB_DATASET), TOKENIZER_DIR=(config.TOKENIZER_DIR, "tokenizer")))


if __name__ == "__main__":
    run_script(main, globals(), memory_hint="lower MAX_STORIES or VOCAB_SIZE")
