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
NO_REPEAT_NGRAM_SIZE = 3  # never repeat a run of this many tokens (0 = off): small models loop
REPETITION_PENALTY = 1.2  # discourage words already used (1.0 = off)
NO_REPEAT_WORDS = 3  # never repeat a run of this many words anywhere in the text, across windows (0 = off)
NO_IMMEDIATE_REPEAT = True  # never the same word twice in a row ("a a"), even with a mark between
BIGRAM_BONUS = 2.0  # score added to words that follow the last word in the training data (MODEL_DIR/ngrams.pt)
TRIGRAM_BONUS = 2.0  # score added to words that follow the last two words in the training data
MARK_BONUS = 3.0  # score added to marks (. , ! ? ") that follow the last two tokens in the training data
BALANCE_QUOTES = True  # a double quote opens only when none is open and closes only an open one
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
from lmkit.settings import UserError, at_least, check_writable, run_script, within
from lmkit.text import warn_unknown_words
from pilish.rules import (NAMED_DIGITS, PilishError, check_rules, digits_of_word, format_verification, get_digits,
                          verify)
from pilish.tokens import WORD_RE, letters_in

MAX_DIGITS = 100_000  # computing them takes seconds (300,000: half a minute, growing faster), writing them hours


def digits_name(source):
    return source if source in NAMED_DIGITS else "the digits"


def show_digits(text, width=100):
    """Each word with its letter count under it, wrapped to `width` columns."""
    lines, top, bottom = [], "", ""
    for word in text.split():
        count = "".join(str(letters_in(w)) for w in WORD_RE.findall(word)) or "-"
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
        check_text_file(config.CHECK_FILE)
        lines = [line for line in open(config.CHECK_FILE, encoding="utf-8").read().splitlines() if line.strip()]
    except OSError as error:
        raise UserError(f"cannot read {config.CHECK_FILE}: {error.strerror}") from None
    except ValueError as error:  # binary or not UTF-8
        raise UserError(str(error)) from None
    if not lines:
        raise UserError(f"{config.CHECK_FILE} has no text to check")
    failures = 0
    for line in lines:
        # check as many digits as the line's words would spell
        needed = sum(len(digits_of_word(letters_in(w), "standard"))
                     for w in WORD_RE.findall(line))
        if needed > MAX_DIGITS:
            raise UserError(f"a line of {config.CHECK_FILE} spells {needed:,} digits; "
                            f"at most {MAX_DIGITS:,} are checked")
        verification = verify(line, get_digits(config.DIGITS, max(1, needed)), config.RULES)
        failures += not verification.ok
        print(format_verification(verification, digits_name(config.DIGITS)))
    if failures:
        sys.exit(1)


def check_settings(config):
    """The ranges that get_digits and WriteOptions leave to the caller."""
    at_least(config, 1, "NUM_SAMPLES")
    if config.NUM_DIGITS > MAX_DIGITS:
        raise UserError(f"NUM_DIGITS is at most {MAX_DIGITS:,}, not {config.NUM_DIGITS:,}")
    at_least(config, 0, "NO_REPEAT_NGRAM_SIZE", "TOP_K", "CONTEXT_LENGTH", "THREADS")
    if config.REPETITION_PENALTY <= 0:
        raise UserError(f"REPETITION_PENALTY must be above 0 (1.0 = off), not {config.REPETITION_PENALTY}")
    if config.DECODING == "sample" and config.TEMPERATURE <= 0:
        raise UserError(f"TEMPERATURE must be above 0 for DECODING=sample, not {config.TEMPERATURE}")
    within(config, "TOP_P", 0, 1, low_open=True)
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

    from pilish.prior import NGRAMS_FILE, load_ngrams
    from pilish.writing import WriteOptions, check_prompt, write

    options = WriteOptions.from_settings(config)  # a bad DECODING or NUM_BEAMS is an error before the model loads

    model, tokenizer = load_model(config.MODEL_DIR)
    use_cpu_threads(config.THREADS, model.device.type)
    check_prompt(tokenizer, config.PROMPT, digits, config.RULES)  # before any warning about its words
    warn_unknown_words(tokenizer, f"{config.TOPIC} {config.PROMPT}")
    prior = config.BIGRAM_BONUS or config.TRIGRAM_BONUS or config.MARK_BONUS
    ngrams = load_ngrams(config.MODEL_DIR) if prior else None
    if ngrams is None and prior:
        print(f"note: no {NGRAMS_FILE} in {config.MODEL_DIR} (train_model.py saves it), so no n-gram prior",
              file=sys.stderr)
    elif config.MARK_BONUS and "marks" not in ngrams:
        print(f"note: {config.MODEL_DIR}/{NGRAMS_FILE} predates MARK_BONUS (it has no marks), so no mark "
              "prior; delete it and run the same train_model.py command again: it trains no further and writes "
              "a new one",
              file=sys.stderr)
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
        words = sum(1 for word in WORD_RE.findall(written.text) if letters_in(word))
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
    run_script(main, globals(), errors=(PilishError,))
