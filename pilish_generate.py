"""Make the trained model write Pilish: text whose word lengths spell the digits of pi.

    python pilish_generate.py                                   # 100 digits of pi, beam search
    python pilish_generate.py --num_digits=32 --show_digits     # each word's letter count under it
    python pilish_generate.py --decoding=sample --num_samples=3 --seed=7
    python pilish_generate.py --digits=e --rules=standard       # other numbers; words > 10 letters
    python pilish_generate.py --prompt="now i need a drink" --num_digits=40
    python pilish_generate.py --topic="Once upon a time, there was a dragon named Max who loved to bake cakes."
    python pilish_generate.py --num_digits=10000 --output_file=pilish.txt
    python pilish_generate.py --check_file=pilish.txt           # verify a text, no model needed

A word of n letters spells the digit n (10 letters spell 0); punctuation spells nothing. Every
text is checked after it is written: "✓ 100/100 digits of pi".
"""

MODEL_DIR = "model"  # from train_model.py
DIGITS = "pi"  # pi, e, phi, sqrt2, or a literal string of digits such as 1234
NUM_DIGITS = 100  # how many digits to spell
RULES = "basic"  # basic: 10-letter words spell 0; standard: also longer words spell two digits (12 -> 1, 2)
ALLOW_PUNCTUATION = True  # punctuation between words (spells nothing); False = words only
PUNCTUATION_LOOKAHEAD = True  # a mark pays for the word it puts off (False: masking alone over-uses marks)
DECODING = "beam"  # beam: the likeliest text the model finds; sample: random, more varied
NUM_BEAMS = 8  # beams for DECODING=beam (more: likelier text, slower)
TEMPERATURE = 0.8  # for DECODING=sample: lower is safer and duller
TOP_K = 50  # for DECODING=sample: among the K likeliest allowed words (0 = all)
TOP_P = 0.95  # for DECODING=sample: among the fewest allowed words covering this probability
NO_REPEAT_NGRAM_SIZE = 0  # never repeat a run of this many tokens within the context window (0 = off: NO_REPEAT_WORDS covers the whole text)
REPETITION_PENALTY = 1.0  # discourage tokens already in the context window, "the" and "." too (1.0 = off)
NO_REPEAT_WORDS = 3  # never repeat a run of this many words anywhere in the text, across windows (0 = off)
NO_IMMEDIATE_REPEAT = True  # never the same word twice in a row ("a a"), even with a mark between
NGRAM_WEIGHT = 0.7  # share of the training stories' n-gram model (MODEL_DIR/ngrams.pt) mixed with the model's: 0 = the model alone (tuned on held-out perplexity: bench/ngram_mix.py)
QUOTES = False  # quote marks (" ') for dialogue: the quick start's model opens and closes them where no one speaks, which blind readers marked down (True: allowed)
BALANCE_QUOTES = True  # a double quote opens only when none is open and closes only an open one
LOOKAHEAD_WEIGHT = 1.0  # cost for a word after which the next digit can only be spelled badly ("the" before a 1: "the a"); uses the n-gram model, so only with NGRAM_WEIGHT > 0 (0 = off)
REAL_SENTENCE_ENDS = True  # end a sentence (. ! ?) only after two tokens that end one in the training stories ("she smiled." yes, "and the." no); uses the n-gram model, so only with NGRAM_WEIGHT > 0
SENTENCE_BONUS = 3.0  # added to the log-probability of each sentence end that REAL_SENTENCE_ENDS allows: blind readers prefer short, complete sentences (0 = off)
UNSEEN_PAIR_COST = 3.0  # log-probability taken from a word or mark that never follows the last one in the training stories ("remembered wanted"): blind readers marked such joins down; uses the n-gram model, so only with NGRAM_WEIGHT > 0 (0 = off)
NUM_SAMPLES = 1  # texts to write
PROMPT = ""  # optional opening words, which must themselves spell the first digits
TOPIC = ""  # optional text the model reads first, to say what the Pilish is about (spells no digits, not printed)
SEED = 42  # same seed, same text
SHOW_DIGITS = False  # print each word's letter count under it
OUTPUT_FILE = ""  # also write the plain texts here, one per line
CHECK_FILE = ""  # only verify this file's lines (one text each) against DIGITS and RULES
CONTEXT_LENGTH = 0  # tokens of context the model sees (0 = all it was trained on); longer texts slide
THREADS = 0  # torch's CPU threads (0 = one per core other programs leave idle; OMP_NUM_THREADS also sets it)

import sys
import time

from lmkit.data import check_text_file
from lmkit.files import write_text
from lmkit.folders import check_not_a_saved_file, load_model, use_cpu_threads
from lmkit.scoring import nll_per_word
from lmkit.settings import UserError, at_least, check_seed_and_threads, check_writable, run_script, within
from lmkit.text import special_tokens_in, warn_unknown_words
from pilish.rules import (NAMED_DIGITS, PilishError, check_rules, digits_of_word, format_verification, get_digits,
                          verify)
from pilish.tokens import letters_in, words_in

MAX_DIGITS = 100_000  # computing them takes seconds (300,000: half a minute, growing faster), writing them hours


def digits_name(source):
    return source if source in NAMED_DIGITS else "the digits"


def show_digits(text, width=100):
    """Each word with its letter count under it, wrapped to `width` columns."""
    lines, top, bottom = [], "", ""
    for word in text.split():
        count = "".join(str(letters_in(w)) for w in words_in(word)) or "-"
        cell = max(len(word), len(count)) + 1
        if len(top) + cell > width and top:
            lines += [top.rstrip(), bottom.rstrip(), ""]
            top, bottom = "", ""
        top += word.ljust(cell)
        bottom += count.ljust(cell)
    return "\n".join(lines + [top.rstrip(), bottom.rstrip()])


def check_file(config):
    """Verify each non-empty line of CHECK_FILE; exit non-zero when any departs."""
    try:
        lines = [line for line in check_text_file(config.CHECK_FILE, keep=True).splitlines() if line.strip()]
    except OSError as error:
        raise UserError(f"cannot read {config.CHECK_FILE}: {error.strerror}") from None
    except ValueError as error:  # binary or not UTF-8
        raise UserError(str(error)) from None
    if not lines:
        raise UserError(f"{config.CHECK_FILE} has no text to check")
    failures = 0
    for line in lines:
        # check as many digits as the line's words would spell
        needed = sum(len(digits_of_word(letters_in(w), "standard")) for w in words_in(line))
        if needed > MAX_DIGITS:
            raise UserError(f"a line of {config.CHECK_FILE} spells {needed:,} digits; "
                            f"at most {MAX_DIGITS:,} are checked")
        verification = verify(line, get_digits(config.DIGITS, max(1, needed)), config.RULES)
        failures += not verification.ok
        print(format_verification(verification, digits_name(config.DIGITS)))
    if failures:
        sys.exit(1)


def load_ngrams(folder):
    """The n-gram model saved beside the model, or None with a note that says why there is none."""
    from pilish.ngram import NGRAMS_FILE, load_ngram_model
    try:
        ngrams = load_ngram_model(folder)
    except ValueError as error:
        print(f"note: no n-gram mix: {error}", file=sys.stderr)
        return None
    if ngrams is None:
        print(f"note: no {NGRAMS_FILE} in {folder} (train_model.py saves it), so no n-gram mix", file=sys.stderr)
    return ngrams


def check_settings(config):
    """The ranges that get_digits and WriteOptions leave to the caller."""
    from pilish.writing import MAX_LOOKAHEAD_WEIGHT, MAX_SENTENCE_BONUS  # torch: not for --help or CHECK_FILE

    within(config, "NUM_SAMPLES", 1, 1000)
    within(config, "NUM_BEAMS", 1, 256)  # each beam holds its own copy of the model's cache
    check_seed_and_threads(config)
    if config.NUM_DIGITS > MAX_DIGITS:
        raise UserError(f"NUM_DIGITS is at most {MAX_DIGITS:,}, not {config.NUM_DIGITS:,}")
    at_least(config, 0, "NO_REPEAT_NGRAM_SIZE", "NO_REPEAT_WORDS", "TOP_K", "CONTEXT_LENGTH", "THREADS")
    if config.REPETITION_PENALTY <= 0:
        raise UserError(f"REPETITION_PENALTY must be above 0 (1.0 = off), not {config.REPETITION_PENALTY}")
    if config.DECODING == "sample" and config.TEMPERATURE <= 0:
        raise UserError(f"TEMPERATURE must be above 0 for DECODING=sample, not {config.TEMPERATURE}")
    if config.DECODING == "sample":  # near 0 the scaled scores overflow to inf
        within(config, "TEMPERATURE", 0.01, 100)
    within(config, "REPETITION_PENALTY", 0, 100, low_open=True)
    within(config, "TOP_P", 0, 1, low_open=True)
    within(config, "NGRAM_WEIGHT", 0, 1)
    within(config, "LOOKAHEAD_WEIGHT", 0, MAX_LOOKAHEAD_WEIGHT)
    within(config, "SENTENCE_BONUS", 0, MAX_SENTENCE_BONUS)
    within(config, "UNSEEN_PAIR_COST", 0, MAX_SENTENCE_BONUS)
    if config.OUTPUT_FILE:  # before the model writes for minutes
        check_not_a_saved_file(config.OUTPUT_FILE, "OUTPUT_FILE")
        check_writable(config.OUTPUT_FILE, "OUTPUT_FILE", folder=False)


def main(config):
    check_rules(config.RULES)
    if config.CHECK_FILE:
        return check_file(config)
    check_settings(config)
    digits = get_digits(config.DIGITS, config.NUM_DIGITS)
    from tqdm import tqdm
    from transformers import set_seed

    from pilish.writing import WriteOptions, check_prompt, write

    options = WriteOptions.from_settings(config)  # a bad DECODING or NUM_BEAMS is an error before the model loads

    model, tokenizer = load_model(config.MODEL_DIR)
    use_cpu_threads(config.THREADS, model.device.type)
    special = special_tokens_in(tokenizer, f"{config.TOPIC} {config.PROMPT}")
    if special:  # its letters would count as a word's, while the model reads one token
        raise UserError(f"the prompt or topic holds the special token {special[0]}: write them in words")
    check_prompt(tokenizer, config.PROMPT, digits, config.RULES)  # before any warning about its words
    warn_unknown_words(tokenizer, f"{config.TOPIC} {config.PROMPT}")
    ngrams = load_ngrams(config.MODEL_DIR) if config.NGRAM_WEIGHT else None
    name = digits_name(config.DIGITS)
    texts = []
    for sample in range(config.NUM_SAMPLES):
        set_seed(config.SEED + sample)
        started = time.perf_counter()
        with tqdm(total=len(digits), unit="digit", disable=len(digits) < 500, file=sys.stderr,
                  desc="writing Pilish") as progress:
            written = write(model, tokenizer, digits, options, prompt=config.PROMPT, topic=config.TOPIC,
                            ngrams=ngrams, progress=progress)
        seconds = time.perf_counter() - started
        texts.append(written.text)
        words = sum(1 for word in words_in(written.text) if letters_in(word))
        nll = nll_per_word(model, tokenizer, written.ids, written.topic_ids + written.prompt_ids,
                           config.CONTEXT_LENGTH)
        if config.NUM_SAMPLES > 1:
            print(f"[{sample + 1}]")
        print(show_digits(written.text) if config.SHOW_DIGITS else written.text)
        print(format_verification(written.verification, name))
        print(f"NLL per word under the model alone: {nll:.3f} | {words} words in {seconds:.1f} s "
              f"({words / seconds:.1f} words/s, {config.DECODING}, {model.device.type})", file=sys.stderr)
        print()
    if config.OUTPUT_FILE:
        write_text(config.OUTPUT_FILE, "\n".join(texts) + "\n")  # whole or not at all
        print(f"wrote {len(texts)} text{'s' * (len(texts) > 1)} to {config.OUTPUT_FILE}", file=sys.stderr)


if __name__ == "__main__":
    run_script(main, globals(), errors=(PilishError,), memory_hint="lower NUM_BEAMS, NUM_SAMPLES or CONTEXT_LENGTH")
