"""Which search settings make Pilish read better: one row per setting, fluency and time side by side.

    python bench/pilish_search.py --model_dir=model                     # 1,000 digits, beam search
    python bench/pilish_search.py --model_dir=model --num_digits=10000 --variants="defaults|before"

Writes NUM_DIGITS digits of pi with pilish_generate's defaults changed by each VARIANT (a name from
VARIANTS below), and reports fluency.py's measure against TRAIN_FILE and against held-out text
(VALID_FILE less its first stories), immediate repeats, sentence ends, quotes and seconds per text.
Appends the table to BENCHMARKS.md.
"""

MODEL_DIR = "model"  # a model folder from train_model.py (with ngrams.pt for the prior rows)
TRAIN_FILE = ""  # the model's training stories, the reference ("" = the bundled sample, data/tinystories-sample)
VALID_FILE = ""  # held-out stories, the held-out reference ("" = the bundled sample's validation stories)
NUM_DIGITS = 1000  # digits of pi per text
VARIANTS = ["before", "defaults"]  # names from VARIANTS below, in order ("|"-separated on the command line)
DECODING = "beam"  # beam or sample
NUM_SEEDS = 1  # texts per variant when sampling
VALID_WORDS = 1000  # words of real text kept out of the held-out reference (the same slice as quality.py's)
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # first sampling seed

import time

from _bench import data_file, report  # first: it puts the repo root on sys.path
from common import UserError, load_model, run_script
from quality import BEFORE, held_out_stories, percent, pilish_texts

# name: pilish.write options on top of pilish_generate's defaults
SEARCH_VARIANTS = {
    "before": BEFORE,
    "defaults": {},
    "beams 16": dict(num_beams=16, **BEFORE),
    "beams 32": dict(num_beams=32, **BEFORE),
    "no immediate repeat": dict(BEFORE, no_immediate_repeat=True),
    "no repeated 3 words in the text": dict(BEFORE, no_immediate_repeat=True, no_repeat_words=3),
    "no repeated 4 words in the text": dict(BEFORE, no_immediate_repeat=True, no_repeat_words=4),
    "text rules, no window rules": dict(BEFORE, no_repeat_ngram_size=0, repetition_penalty=1.0,
                                        no_immediate_repeat=True, no_repeat_words=3),
    "bigram prior 1": dict(BEFORE, bigram_bonus=1.0),
    "bigram prior 2": dict(BEFORE, bigram_bonus=2.0),
    "bigram prior 4": dict(BEFORE, bigram_bonus=4.0),
    "trigram prior 2": dict(BEFORE, trigram_bonus=2.0),
    "bi + trigram prior 2 + 2": dict(BEFORE, bigram_bonus=2.0, trigram_bonus=2.0),
    "bi + trigram prior 3 + 3": dict(BEFORE, bigram_bonus=3.0, trigram_bonus=3.0),
    "bi + trigram prior 2 + 2, text rules": dict(BEFORE, bigram_bonus=2.0, trigram_bonus=2.0,
                                                  no_immediate_repeat=True, no_repeat_words=3),
    "bi + trigram prior 3 + 3, text rules": dict(BEFORE, bigram_bonus=3.0, trigram_bonus=3.0,
                                                  no_immediate_repeat=True, no_repeat_words=3),
    "defaults, no mark prior": dict(mark_bonus=0.0),
    "defaults, unbalanced quotes": dict(balance_quotes=False),
    "defaults, mark prior 1": dict(mark_bonus=1.0),
    "defaults, mark prior 2": dict(mark_bonus=2.0),
    "defaults, mark prior 4": dict(mark_bonus=4.0),
    "mark prior 3 alone": dict(BEFORE, mark_bonus=3.0),
    "defaults, no window rules": dict(no_repeat_ngram_size=0, repetition_penalty=1.0),
    "defaults, no repetition penalty": dict(repetition_penalty=1.0),
    "defaults, beams 16": dict(num_beams=16),
    "defaults, beams 4": dict(num_beams=4),
}


def main(config):
    import torch
    import transformers

    import fluency
    from pilish import get_digits

    unknown = [name for name in config.VARIANTS if name not in SEARCH_VARIANTS]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r}: use some of {', '.join(SEARCH_VARIANTS)}")
    train_path, valid_path = data_file(config.TRAIN_FILE, "train"), data_file(config.VALID_FILE, "validation")
    model, tokenizer = load_model(config.MODEL_DIR)
    transformers.logging.set_verbosity_error()
    _, held_out = held_out_stories(valid_path, type("Slice", (), dict(VALID_WORDS=config.VALID_WORDS, NUM_SEEDS=3)))
    references = {"train": fluency.build_reference(fluency.read_stories(train_path)),
                  "held out": fluency.build_reference(held_out)}
    digits = get_digits("pi", config.NUM_DIGITS)
    seeds = [config.SEED + i for i in range(config.NUM_SEEDS if config.DECODING == "sample" else 1)]
    headers = ["variant", "bigrams", "trigrams", "held-out bigrams", "held-out trigrams", "immediate repeats",
               "good sentence ends", "words/sentence", "bad quotes", "exact", "s/text"]
    rows = []
    with torch.inference_mode():
        for name in config.VARIANTS:
            options = dict(SEARCH_VARIANTS[name])
            began = time.perf_counter()
            texts = pilish_texts(model, tokenizer, digits, seeds, config.DECODING, options.pop("num_beams", None), **options)
            seconds = (time.perf_counter() - began) / len(texts)
            train, held = (sum((fluency.measure(text, ref) for _, _, text in texts), fluency.Fluency())
                           for ref in references.values())
            exact = [ok for _, ok, _ in texts]
            rows.append([name, percent(train.bigram_share), percent(train.trigram_share), percent(held.bigram_share),
                         percent(held.trigram_share), percent(train.repeat_share), percent(train.good_end_share),
                         f"{train.words_per_sentence:.1f}",
                         f"{train.bad_quotes}/{train.quotes}", f"{'✓' if all(exact) else '✗'} {sum(exact)}/{len(exact)}",
                         f"{seconds:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
            print("   ", texts[0][2][:300], flush=True)
    notes = [f"{config.NUM_DIGITS:,} digits of pi, {config.DECODING}"
             + (f", seeds {seeds[0]}–{seeds[-1]}" if config.DECODING == "sample" else "")
             + f"; model {config.MODEL_DIR}; fluency as in bench/quality.py (reference {train_path.name}; "
             "held out: valid.txt less the real-text row); s/text on a shared machine: compare within the table",
             "variants: " + "; ".join(f"{name}: {SEARCH_VARIANTS[name] or 'pilish_generate defaults'}"
                                      for name in config.VARIANTS)]
    report(__file__, headers, rows, notes, enabled=config.RECORD)


if __name__ == "__main__":
    run_script(main, globals())
