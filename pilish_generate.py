"""Make the trained model write Pilish: text whose word lengths spell the digits of pi.

    python pilish_generate.py                                   # 100 digits of pi, beam search
    python pilish_generate.py --num_digits=32 --show_digits     # each word's letter count under it
    python pilish_generate.py --decoding=sample --num_samples=3 --seed=7
    python pilish_generate.py --digits=e --rules=standard       # other numbers; words > 10 letters
    python pilish_generate.py --prompt="now i need a drink" --num_digits=40
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
NUM_SAMPLES = 1  # texts to write
PROMPT = ""  # optional opening words, which must themselves spell the first digits
SEED = 42  # same seed, same text
SHOW_DIGITS = False  # print each word's letter count under it
OUTPUT_FILE = ""  # also write the plain texts here, one per line
CHECK_FILE = ""  # only verify this file's lines (one text each) against DIGITS and RULES
CONTEXT_LENGTH = 0  # tokens of context the model sees (0 = all it was trained on); longer texts slide

import re
import sys
import time

import torch

from common import UserError, join_tokens, load_model, run_script, split_words, token_nll
from pilish import (NAMED_DIGITS, RULES as RULE_NAMES, PilishLogitsProcessor, PilishStoppingCriteria,
                    WORD_RE, digits_of_word, format_verification, get_digits, letters_in, verify)

DECODINGS = ("beam", "sample")


def digits_name(source):
    return source if source in NAMED_DIGITS else "the digits"


def check_prompt(pieces, digits, rules):
    """Digits the prompt spells; a UserError at the first word that breaks them."""
    verification = verify(" ".join(pieces), digits, rules)
    if verification.departed:
        raise UserError(f"the prompt does not follow the digits: {verification.departure}")
    return verification.matched


def generation_settings(config):
    common = dict(no_repeat_ngram_size=config.NO_REPEAT_NGRAM_SIZE or None,
                  repetition_penalty=config.REPETITION_PENALTY if config.REPETITION_PENALTY != 1 else None)
    if config.DECODING == "beam":
        return dict(do_sample=False, num_beams=config.NUM_BEAMS, early_stopping=True, **common)
    return dict(do_sample=True, temperature=config.TEMPERATURE, top_k=config.TOP_K or None,
                top_p=config.TOP_P, **common)


def window_length(model, config):
    """Tokens of context the model sees: CONTEXT_LENGTH, at most what it was trained on."""
    return min(config.CONTEXT_LENGTH or model.config.n_positions, model.config.n_positions)


def write_pilish(model, tokenizer, digits, config, prompt_ids=(), prompt_digits=0, progress=None):
    """Generate the token ids that continue `prompt_ids` with Pilish for the rest of `digits`.

    The text may be far longer than the model's context, so it is written in windows: each call to
    generate sees the last CONTEXT_LENGTH tokens and the processor carries the digit position over.
    """
    eot = tokenizer.eos_token_id
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    processor = PilishLogitsProcessor(
        vocab, digits, rules=config.RULES, allow_punctuation=config.ALLOW_PUNCTUATION,
        punctuation_lookahead=config.PUNCTUATION_LOOKAHEAD,
        banned_ids=tokenizer.all_special_ids, end_ids=[eot], start_digit=prompt_digits)
    stopping = PilishStoppingCriteria(processor)
    context_length = window_length(model, config)
    new_per_window = max(1, context_length // 4)  # then keep 3/4 of a context when the window slides
    settings = generation_settings(config)
    text_ids = [eot, *prompt_ids]  # a story starts after <|endoftext|>, as in training
    generated, position = [], prompt_digits
    while True:
        window = torch.tensor([(text_ids + generated)[-(context_length - new_per_window):]], device=model.device)
        processor.restart(window.shape[1], position)
        output = model.generate(
            window, attention_mask=torch.ones_like(window), max_new_tokens=new_per_window,
            logits_processor=[processor], stopping_criteria=[stopping],
            eos_token_id=eot, pad_token_id=tokenizer.pad_token_id, use_cache=True, **settings)
        new = output[0, window.shape[1]:].tolist()
        if eot in new:  # the end token closes the text; what follows is padding
            new = new[:new.index(eot) + 1]
        if not new:
            raise RuntimeError("the model generated nothing; this is a bug in the Pilish processor")
        generated += new
        before, position = position, int(processor.positions(output[:, :window.shape[1] + len(new)])[0])
        if progress is not None:
            progress.update(position - before)
        if bool(stopping(output[:, :window.shape[1] + len(new)])[0]) or new[-1] == eot:
            return [token for token in generated if token != eot]


def finish_sentence(text):
    """A text ends with a full stop (the closing mark is allowed, not forced) and closes its quote."""
    text = text if re.search(r"[.!?][\"']?$", text) else text + "."
    return text + '"' if text.count('"') % 2 else text


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


def nll_per_word(model, tokenizer, prompt_ids, generated, context_length):
    """Mean negative log-likelihood of the generated tokens per generated word, under the model alone."""
    ids = [tokenizer.eos_token_id, *prompt_ids, *generated]
    losses = token_nll(model, ids, context_length)[-len(generated):] if generated else torch.zeros(0)
    special = set(tokenizer.all_special_ids)
    words = sum(1 for token_id, token in zip(generated, tokenizer.convert_ids_to_tokens(generated))
                if token_id not in special and letters_in(token))
    return float(losses.sum()) / max(1, words)


def check_file(config):
    """Verify each non-empty line of CHECK_FILE; exit non-zero when any departs."""
    try:
        lines = [line for line in open(config.CHECK_FILE, encoding="utf-8").read().splitlines() if line.strip()]
    except OSError as error:
        raise UserError(f"cannot read {config.CHECK_FILE}: {error.strerror}") from None
    if not lines:
        raise UserError(f"{config.CHECK_FILE} has no text to check")
    failures = 0
    for line in lines:
        # check as many digits as the line's words would spell
        needed = sum(len(digits_of_word(letters_in(w), "standard")) for w in WORD_RE.findall(line))
        verification = verify(line, get_digits(config.DIGITS, max(1, needed)), config.RULES)
        failures += not verification.ok
        print(format_verification(verification, digits_name(config.DIGITS)))
    if failures:
        sys.exit(1)


def check_settings(config):
    if config.RULES not in RULE_NAMES:
        raise UserError(f"RULES must be one of {', '.join(RULE_NAMES)}, not {config.RULES!r}")
    if config.DECODING not in DECODINGS:
        raise UserError(f"DECODING must be one of {', '.join(DECODINGS)}, not {config.DECODING!r}")
    if config.NUM_BEAMS < 1 or config.NUM_SAMPLES < 1:
        raise UserError("NUM_BEAMS and NUM_SAMPLES must be at least 1")


def main(config):
    from tqdm import tqdm
    from transformers import set_seed

    check_settings(config)
    if config.CHECK_FILE:
        return check_file(config)
    digits = get_digits(config.DIGITS, config.NUM_DIGITS)
    model, tokenizer = load_model(config.MODEL_DIR)
    pieces, prompt_ids = split_words(tokenizer, config.PROMPT)
    prompt_digits = check_prompt(pieces, digits, config.RULES)
    unknown = [piece for piece, token_id in zip(pieces, prompt_ids) if token_id == tokenizer.unk_token_id]
    if unknown:
        print(f"warning: not in the vocabulary, the model reads them as [UNK]: {', '.join(unknown)}", file=sys.stderr)
    context_length = window_length(model, config)
    name = digits_name(config.DIGITS)

    texts = []
    for sample in range(config.NUM_SAMPLES):
        set_seed(config.SEED + sample)
        started = time.perf_counter()
        long_run = len(digits) >= 500
        with tqdm(total=len(digits), initial=prompt_digits, unit="digit", disable=not long_run,
                  file=sys.stderr, desc="writing Pilish") as progress:
            generated = write_pilish(model, tokenizer, digits, config, prompt_ids, prompt_digits, progress)
        seconds = time.perf_counter() - started
        tokens = pieces + tokenizer.convert_ids_to_tokens(generated)
        text = finish_sentence(join_tokens(tokens))
        texts.append(text)
        words = sum(1 for token in tokens if letters_in(token))
        if config.NUM_SAMPLES > 1:
            print(f"[{sample + 1}]")
        print(show_digits(text) if config.SHOW_DIGITS else text)
        print(format_verification(verify(text, digits, config.RULES), name))
        print(f"NLL per word under the model alone: {nll_per_word(model, tokenizer, prompt_ids, generated, context_length):.3f}"
              f" | {words} words in {seconds:.1f} s ({words / seconds:.1f} words/s, {config.DECODING}, "
              f"{model.device.type})", file=sys.stderr)
        print()
    if config.OUTPUT_FILE:
        with open(config.OUTPUT_FILE, "w", encoding="utf-8") as handle:
            handle.write("\n".join(texts) + "\n")
        print(f"wrote {len(texts)} text{'s' * (len(texts) > 1)} to {config.OUTPUT_FILE}", file=sys.stderr)


if __name__ == "__main__":
    run_script(main, globals())
