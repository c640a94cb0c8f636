"""Generation speed: free sampling against Pilish sampling and Pilish beam search, same model, same run.

    python -m bench.generate_speed                        # the model in ./model; a few minutes on 2 CPU cores
    python -m bench.generate_speed --model_dir=/tmp/model --new_tokens=100 --repeats=5
    python -m bench.generate_speed --num_digits_long=300 --record=false   # a quick check

Batch of one, KV cache on. Free sampling is forced to write exactly NEW_TOKENS tokens; the Pilish runs
go through pilish.writing.write with generate's window rules (no-repeat 3-grams, repetition
penalty, sliding window; not the whole-text rules and the n-gram mix) and spell as many digits as make about
NEW_TOKENS tokens: the cost of the Pilish mask itself. Their speed is
counted over the tokens they actually wrote. Each sampling row is measured with torch's default
thread count and with one thread: on 2 cores a batch-1 step is too small to split well.
Then one NUM_DIGITS_LONG-digit run with all of pilish_generate's defaults (beam, whole-text rules,
the n-gram mix with MODEL_DIR/ngrams.pt), checked with pilish.rules.verify,
with the thread count that made the short beam runs faster.
Appends the table to BENCHMARKS.md.
"""

MODEL_DIR = "model"  # from train_model.py
NEW_TOKENS = 200  # tokens per measured text (less than the model's context)
TEMPERATURE = 0.8  # sampling temperature, free and Pilish alike
TOP_K = 50  # sample among the K likeliest tokens, free and Pilish alike
TOP_P = 0.95  # ... and within this probability mass (generate.py's and pilish_generate.py's default)
NUM_BEAMS = 8  # beams for the Pilish beam-search row
NUM_DIGITS_LONG = 10000  # digits of pi for the single long run (pilish_generate's defaults: beam)
LONG_RUN_THREADS = 0  # torch threads for the long run (0 = whichever count made the short beam runs faster)
REPEATS = 3  # measurements per row; the table quotes medians
OVERHEAD_GOAL = 1.2  # Pilish sampling may cost at most this many times free sampling per token
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # repeat r uses seed SEED + r for every row

import time
from dataclasses import replace

from bench.pilish_texts import WINDOW_RULES
from bench.support import median, report
from lmkit.folders import load_model
from lmkit.settings import UserError, run_script
from pilish.ngram import load_ngram_model
from pilish.rules import get_digits
from pilish.writing import WriteOptions, write


def free_sample(model, tokenizer, config):
    """Exactly NEW_TOKENS sampled tokens after <|endoftext|>: the number of tokens written."""
    import torch
    start = torch.tensor([[tokenizer.eos_token_id]], device=model.device)
    output = model.generate(
        start, attention_mask=torch.ones_like(start), do_sample=True, temperature=config.TEMPERATURE,
        top_k=config.TOP_K, top_p=config.TOP_P, max_new_tokens=config.NEW_TOKENS,
        min_new_tokens=config.NEW_TOKENS,  # the end token is suppressed until then
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, use_cache=True)
    return output.shape[1] - 1, None


def pilish_run(model, tokenizer, digits, options, ngrams=None):
    """One Pilish text through pilish.writing.write: the tokens it wrote and whether it spells `digits`."""
    written = write(model, tokenizer, digits, options, ngrams=ngrams)
    return len(written.ids), written.verification.ok


def timed(run, seed):
    """(seconds, tokens, exact) of one call of `run`, after seeding."""
    import torch
    from transformers import set_seed
    set_seed(seed)
    with torch.inference_mode():
        started = time.perf_counter()
        tokens, exact = run()
        return time.perf_counter() - started, tokens, exact


def main(config):
    import torch
    import transformers

    if min(config.NEW_TOKENS, config.REPEATS, config.NUM_BEAMS, config.NUM_DIGITS_LONG) < 1 \
            or config.LONG_RUN_THREADS < 0:
        raise UserError("NEW_TOKENS, REPEATS, NUM_BEAMS and NUM_DIGITS_LONG must be at least 1, "
                        "LONG_RUN_THREADS at least 0")
    model, tokenizer = load_model(config.MODEL_DIR)
    if config.NEW_TOKENS >= model.config.n_positions:
        raise UserError(f"NEW_TOKENS must be below the model's context of {model.config.n_positions} tokens "
                        f"(free sampling does not slide a window)")
    transformers.logging.set_verbosity_error()
    default_threads = torch.get_num_threads()
    thread_counts = [default_threads] + ([1] if default_threads > 1 else [])

    # pilish_generate's window rules alone, with this benchmark's sampling settings and beams
    short = replace(WINDOW_RULES, temperature=config.TEMPERATURE, top_k=config.TOP_K, top_p=config.TOP_P,
                    num_beams=config.NUM_BEAMS)
    sample = replace(short, decoding="sample")
    sample_free_rules = replace(sample, no_repeat_ngram_size=0, repetition_penalty=1.0)
    beam = replace(short, decoding="beam")

    # Warm-up, which also calibrates: how many digits make about NEW_TOKENS Pilish tokens
    timed(lambda: free_sample(model, tokenizer, config), config.SEED)
    _, tokens, _ = timed(lambda: pilish_run(model, tokenizer, get_digits("pi", config.NEW_TOKENS), sample),
                         config.SEED)
    num_digits = max(1, round(config.NEW_TOKENS * config.NEW_TOKENS / tokens))
    digits = get_digits("pi", num_digits)
    print(f"model {config.MODEL_DIR} on {model.device.type}; {num_digits} digits of pi make about "
          f"{config.NEW_TOKENS} Pilish tokens; torch threads {' and '.join(map(str, thread_counts))}; {config.REPEATS} repeats")

    rows_to_run = []  # (label, threads, run)
    for threads in thread_counts:
        rows_to_run += [
            ("free sample", threads, lambda: free_sample(model, tokenizer, config)),
            ("Pilish sample", threads, lambda: pilish_run(model, tokenizer, digits, sample)),
            ("Pilish sample, no repeat rules", threads, lambda: pilish_run(model, tokenizer, digits, sample_free_rules)),
            (f"Pilish beam {config.NUM_BEAMS}", threads, lambda: pilish_run(model, tokenizer, digits, beam)),
        ]
    results = {index: [] for index in range(len(rows_to_run))}
    for repeat in range(config.REPEATS):
        for index, (label, threads, run) in enumerate(rows_to_run):  # every row in each repeat, side by side
            torch.set_num_threads(threads)
            results[index].append(timed(run, config.SEED + repeat))
        torch.set_num_threads(default_threads)
        print(f"  repeat {repeat + 1}/{config.REPEATS} done")

    def ms_per_token(index):
        return median([1000 * seconds / tokens for seconds, tokens, _ in results[index]])

    free_ms = {threads: ms_per_token(index) for index, (label, threads, _) in enumerate(rows_to_run)
               if label == "free sample"}
    headers = ["setting", "threads", "tokens", "tokens/s", "ms/token", "vs free sample", "exact"]
    rows = []
    for index, (label, threads, _) in enumerate(rows_to_run):
        ms = ms_per_token(index)
        exact = [e for _, _, e in results[index]]
        rows.append([label, threads, f"{median([t for _, t, _ in results[index]]):.0f}", f"{1000 / ms:,.0f}",
                     f"{ms:.2f}", f"{ms / free_ms[threads]:.2f}x",
                     "" if exact[0] is None else f"{'✓' if all(exact) else '✗'} {sum(exact)}/{len(exact)}"])

    # One long run with pilish_generate's defaults (beam search, punctuation), with the thread count
    # under which the short beam runs were faster unless LONG_RUN_THREADS says otherwise
    beam_ms = {threads: ms_per_token(index) for index, (label, threads, _) in enumerate(rows_to_run)
               if label.startswith("Pilish beam")}
    long_threads = config.LONG_RUN_THREADS or min(beam_ms, key=beam_ms.get)
    long_options = WriteOptions()  # all of pilish_generate's defaults: the whole-text rules and the priors too
    ngrams = load_ngram_model(config.MODEL_DIR)
    print(f"  one {config.NUM_DIGITS_LONG:,}-digit run ({long_options.decoding}, {long_options.num_beams} beams, "
          f"{long_threads} thread{'s' * (long_threads > 1)}) ...")
    torch.set_num_threads(long_threads)
    seconds, tokens, exact = timed(lambda: pilish_run(
        model, tokenizer, get_digits("pi", config.NUM_DIGITS_LONG), long_options, ngrams), config.SEED)
    torch.set_num_threads(default_threads)
    long_vs_free = f"{1000 * seconds / tokens / free_ms[long_threads]:.2f}x" if long_threads in free_ms else ""
    rows.append([f"Pilish {long_options.decoding} {long_options.num_beams}, {config.NUM_DIGITS_LONG:,} digits "
                 f"({seconds:.0f} s)", long_threads, tokens, f"{tokens / seconds:,.0f}",
                 f"{1000 * seconds / tokens:.2f}", long_vs_free, "✓" if exact else "✗"])

    overheads = {threads: ms_per_token(index) / free_ms[threads]
                 for index, (label, threads, _) in enumerate(rows_to_run) if label == "Pilish sample"}
    verdict = "; ".join(f"{t} thread{'s' * (t > 1)}: {o:.2f}x {'✓' if o <= config.OVERHEAD_GOAL else '✗'}"
                        for t, o in overheads.items())
    notes = [
        f"Pilish sampling overhead per token (goal ≤ {config.OVERHEAD_GOAL}x free sampling): {verdict}",
        f"medians of {config.REPEATS}; Pilish rows spell {num_digits} digits of pi with pilish_generate's defaults "
        f"(no_repeat_ngram_size {short.no_repeat_ngram_size}, repetition_penalty {short.repetition_penalty}, "
        f"window of {model.config.n_positions} tokens sliding every {model.config.n_positions // 4}); "
        f"beam rows count the tokens of the text returned; the long run adds the defaults' whole-text rules and "
        f"n-gram mix (MODEL_DIR/ngrams.pt{'' if ngrams else ': none, so no mix'})",
        *([f"threads: free sampling takes {free_ms[default_threads]:.2f} ms/token with {default_threads} threads "
           f"and {free_ms[1]:.2f} with 1 ({free_ms[default_threads] / free_ms[1]:.2f}x)"] if 1 in free_ms
          and default_threads != 1 else []),
        f"sampling: temperature {config.TEMPERATURE}, top_k {config.TOP_K}, top_p {config.TOP_P}; "
        f"free sampling writes exactly {config.NEW_TOKENS} tokens",
    ]
    report(__file__, headers, rows, notes, enabled=config.RECORD)


if __name__ == "__main__":
    run_script(main, globals())
