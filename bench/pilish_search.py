"""Which search settings make Pilish read better: one row per setting, fluency and time side by side.

    python -m bench.pilish_search --model_dir=model                     # 1,000 digits, beam search
    python -m bench.pilish_search --model_dir=model --num_digits=10000 --variants="defaults|before"

Writes NUM_DIGITS digits of pi with pilish_generate's defaults changed by each VARIANT (a name from
SEARCH_VARIANTS below: pilish.writing.WriteOptions), and reports pilish/fluency.py's measure against
TRAIN_FILE and against held-out text (VALID_FILE less its first stories), immediate repeats, sentence
ends, quotes and seconds per text. Appends the table to BENCHMARKS.md.
"""

MODEL_DIR = "model"  # a model folder from train_model.py (with ngrams.pt for the n-gram mix)
TRAIN_FILE = ""  # the model's training stories, the reference ("" = the bundled sample, data/tinystories-sample)
VALID_FILE = ""  # held-out stories, the held-out reference ("" = the bundled sample's validation stories)
NUM_DIGITS = 1000  # digits of pi per text
VARIANTS = ["before", "defaults"]  # names from SEARCH_VARIANTS below, in order ("|"-separated on the command line)
DECODING = "beam"  # beam or sample
NUM_SEEDS = 1  # texts per variant when sampling
VALID_WORDS = 1000  # words of real text kept out of the held-out reference (the same slice as quality.py's)
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # first sampling seed

import time
from dataclasses import replace

from bench.pilish_texts import (BEFORE, BLOG, FLUENCY_HEADERS, describe, exact_cell, fluency_cells, held_out_stories,
                                pilish_texts, references)
from bench.support import data_file, report
from lmkit.folders import load_model
from lmkit.settings import UserError, run_script
from pilish.ngram import load_ngram_model
from pilish.rules import PilishError, get_digits
from pilish.writing import WriteOptions

DEFAULTS = WriteOptions()  # pilish_generate's defaults

# name: how pilish.writing.write writes (DECODING replaces each one's decoding)
SEARCH_VARIANTS = {
    "before": BEFORE,
    "defaults": DEFAULTS,
    "beams 16": replace(BEFORE, num_beams=16),
    "beams 32": replace(BEFORE, num_beams=32),
    "no immediate repeat": replace(BEFORE, no_immediate_repeat=True),
    "no repeated 3 words in the text": replace(BEFORE, no_immediate_repeat=True, no_repeat_words=3),
    "no repeated 4 words in the text": replace(BEFORE, no_immediate_repeat=True, no_repeat_words=4),
    "text rules, no window rules": replace(BEFORE, no_repeat_ngram_size=0, repetition_penalty=1.0,
                                           no_immediate_repeat=True, no_repeat_words=3),
    "n-gram weight 0.3, text rules": replace(BEFORE, ngram_weight=0.3, no_immediate_repeat=True, no_repeat_words=3),
    "n-gram weight 0.7, text rules": replace(BEFORE, ngram_weight=0.7, no_immediate_repeat=True, no_repeat_words=3),
    "defaults, no n-gram mix": replace(DEFAULTS, ngram_weight=0.0),
    "defaults, n-gram weight 0.5": replace(DEFAULTS, ngram_weight=0.5),
    "defaults, n-gram weight 0.9": replace(DEFAULTS, ngram_weight=0.9),
    "defaults, unbalanced quotes": replace(DEFAULTS, balance_quotes=False),
    "defaults, window rules": replace(DEFAULTS, no_repeat_ngram_size=3, repetition_penalty=1.2),
    "defaults, repetition penalty": replace(DEFAULTS, repetition_penalty=1.2),
    "blog": BLOG,
    "defaults, beams 16": replace(DEFAULTS, num_beams=16),
    "defaults, beams 4": replace(DEFAULTS, num_beams=4),
    # the sentence settings (issue 20, 2026-12-05): the defaults until then, and each one undone alone
    "defaults, no sentence rules, quotes": replace(DEFAULTS, quotes=True, real_sentence_ends=False, sentence_bonus=0.0,
                                                   unseen_pair_cost=0.0),
    "defaults, quotes": replace(DEFAULTS, quotes=True),
    "defaults, no sentence bonus": replace(DEFAULTS, sentence_bonus=0.0),
    "defaults, sentence bonus 2": replace(DEFAULTS, sentence_bonus=2.0),
    "defaults, any sentence end": replace(DEFAULTS, real_sentence_ends=False),
    "defaults, no unseen pair cost": replace(DEFAULTS, unseen_pair_cost=0.0),
}


def main(config):
    import torch
    import transformers

    unknown = [name for name in config.VARIANTS if name not in SEARCH_VARIANTS]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r}: use some of {', '.join(SEARCH_VARIANTS)}")
    # a bad DECODING is a PilishError here, before the model loads
    variants = {name: replace(SEARCH_VARIANTS[name], decoding=config.DECODING) for name in config.VARIANTS}
    train_path, valid_path = data_file(config.TRAIN_FILE, "train"), data_file(config.VALID_FILE, "validation")
    model, tokenizer = load_model(config.MODEL_DIR)
    transformers.logging.set_verbosity_error()
    # the held-out reference leaves out what quality.py's real-text row uses (its default NUM_SEEDS texts)
    _, held_out = held_out_stories(valid_path, num_texts=3, words_per_text=config.VALID_WORDS)
    refs = references(train_path, held_out)
    ngrams = load_ngram_model(config.MODEL_DIR)
    digits = get_digits("pi", config.NUM_DIGITS)
    seeds = [config.SEED + i for i in range(config.NUM_SEEDS if config.DECODING == "sample" else 1)]
    headers = ["variant", *FLUENCY_HEADERS, "exact", "s/text"]
    rows = []
    with torch.inference_mode():
        for name, options in variants.items():
            began = time.perf_counter()
            texts = pilish_texts(model, tokenizer, digits, seeds, options, ngrams=ngrams)
            seconds = (time.perf_counter() - began) / len(texts)
            rows.append([name, *fluency_cells(texts, refs), exact_cell(texts), f"{seconds:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
            print("   ", texts[0][2][:300], flush=True)
    notes = [f"{config.NUM_DIGITS:,} digits of pi, {config.DECODING}"
             + (f", seeds {seeds[0]}–{seeds[-1]}" if config.DECODING == "sample" else "")
             + f"; model {config.MODEL_DIR}; fluency as in bench/quality.py (reference {train_path.name}; "
             "held out: valid.txt less the real-text row); s/text on a shared machine: compare within the table",
             "variants: " + "; ".join(f"{name}: {describe(SEARCH_VARIANTS[name])}" for name in config.VARIANTS)]
    report(__file__, headers, rows, notes, enabled=config.RECORD)


if __name__ == "__main__":
    run_script(main, globals(), errors=(PilishError,))
