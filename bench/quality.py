"""Quality on the real TinyStories sample: how well the model learns it and how well its Pilish reads.

    python -m bench.quality                           # trains for MAX_STEPS on CPU: about 15 minutes on 2 cores
    python -m bench.quality --model_dir=model         # score an already trained model instead
    python -m bench.quality --max_steps=600 --num_seeds=5 --long_digits=0

Trains a tokenizer and a model on TRAIN_FILE (validation on VALID_FILE) with train_model.py's defaults
except MAX_STEPS, BATCH_SIZE and DROPOUT, then reports the validation loss and perplexity, the [UNK]
rate of VALID_FILE's words, and for Pilish of NUM_DIGITS and LONG_DIGITS digits of pi (beam search and
sampling, with pilish_generate's defaults and with the settings before issue 11): the fluency measure
of pilish/fluency.py against TRAIN_FILE (what the model saw) and against held-out text (VALID_FILE, less the
stories used as the real-text row), immediate repeats, sentence ends, quotes, the NLL per word under
the unconstrained model and whether each text is exact, next to the model's own free samples and
real held-out stories and the Markov-chain peer's Pilish (bench/markov_pilish.py: a word trigram
chain of TRAIN_FILE, MARKOV_BEAMS beams). Appends the table to BENCHMARKS.md.
"""

TRAIN_FILE = ""  # stories to train on ("" = the bundled sample, data/tinystories-sample/train.txt.gz)
VALID_FILE = ""  # validation stories ("" = the bundled sample, data/tinystories-sample/valid.txt.gz)
MODEL_DIR = ""  # a trained model to score ("" = train one into a temporary folder)
MAX_STEPS = 300  # training steps (x BATCH_SIZE x 256 tokens: ~10 passes over the sample)
BATCH_SIZE = 32  # blocks per training step
DROPOUT = 0.1  # the sample is small, so several passes over it: some dropout keeps it from memorizing
NUM_DIGITS = 100  # digits of pi per short Pilish text
LONG_DIGITS = 1000  # digits of pi per long Pilish text (0 = no long rows)
NUM_SEEDS = 3  # texts per sampled setting (seeds SEED, SEED + 1, ...); beam search is deterministic: one text
NUM_BEAMS = 8  # beams for the beam-search rows
MARKOV_BEAMS = 16  # beams for the Markov-chain peer's rows (bench/markov_pilish.py; 0 = no such rows)
FREE_TOKENS = 150  # tokens per free sample (the reference for what the model writes unconstrained)
TEMPERATURE = 0.8  # free samples' sampling temperature (generate.py's default)
TOP_K = 50  # free samples sample among the K likeliest tokens (generate.py's default)
TOP_P = 0.95  # ... and within this probability mass (generate.py's default)
VALID_WORDS = 1000  # words of held-out real text per row text (NUM_SEEDS texts, from VALID_FILE)
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # training seed and first generation seed

import json
import tempfile
import time
from dataclasses import replace
from functools import cache
from pathlib import Path

from bench.markov_pilish import MarkovChain, markov_text
from bench.pilish_texts import (BEFORE, FLUENCY_HEADERS, exact_cell, fluency_cells, held_out_stories,
                                pilish_texts, references)
from bench.support import data_file, median, report, run_project_script
from lmkit.data import load_stories
from lmkit.folders import load_model
from lmkit.scoring import nll_per_word
from lmkit.settings import UserError, run_script
from lmkit.text import detokenize
from lmkit.tokenizer import unk_rate
from pilish.ngram import load_ngram_model
from pilish.fluency import read_stories
from pilish.rules import get_digits, verify
from pilish.writing import WriteOptions


def train(config, train_path, valid_path, folder):
    """Tokenizer and model trained with the project's own scripts into `folder`; the model folder."""
    tokenizer_dir, model_dir = f"{folder}/tokenizer", f"{folder}/model"
    run_project_script("train_tokenizer.py", f"--dataset={train_path}", f"--tokenizer_dir={tokenizer_dir}")
    run_project_script(
        "train_model.py", f"--dataset={train_path}", f"--valid_dataset={valid_path}",
        f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={model_dir}", f"--max_steps={config.MAX_STEPS}",
        f"--batch_size={config.BATCH_SIZE}", f"--dropout={config.DROPOUT}", f"--seed={config.SEED}")
    return model_dir


def free_samples(model, tokenizer, config, seeds):
    """[(token ids, None, text)]: FREE_TOKENS tokens each, sampled after <|endoftext|> with TEMPERATURE,
    TOP_K and TOP_P (the end token suppressed, as the Pilish processor bans it too)."""
    import torch
    from transformers import set_seed

    start = torch.tensor([[tokenizer.eos_token_id]], device=model.device)
    texts = []
    for seed in seeds:
        set_seed(seed)
        output = model.generate(
            start, attention_mask=torch.ones_like(start), do_sample=True, temperature=config.TEMPERATURE,
            top_k=config.TOP_K or None, top_p=config.TOP_P, max_new_tokens=config.FREE_TOKENS,
            min_new_tokens=config.FREE_TOKENS, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, use_cache=True)
        ids = output[0, 1:].tolist()
        texts.append((ids, None, detokenize(tokenizer, ids)))
    return texts


def main(config):
    import torch
    import transformers

    if min(config.MAX_STEPS, config.BATCH_SIZE, config.NUM_DIGITS, config.NUM_SEEDS, config.NUM_BEAMS,
           config.FREE_TOKENS, config.VALID_WORDS) < 1 or min(config.LONG_DIGITS, config.MARKOV_BEAMS) < 0:
        raise UserError("MAX_STEPS, BATCH_SIZE, NUM_DIGITS, NUM_SEEDS, NUM_BEAMS, FREE_TOKENS and VALID_WORDS "
                        "must be at least 1, LONG_DIGITS and MARKOV_BEAMS at least 0")
    train_path, valid_path = data_file(config.TRAIN_FILE, "train"), data_file(config.VALID_FILE, "validation")
    work = tempfile.TemporaryDirectory(prefix="bench-quality-")
    started = time.perf_counter()
    model_dir = config.MODEL_DIR or train(config, train_path, valid_path, work.name)
    train_seconds = time.perf_counter() - started
    model, tokenizer = load_model(model_dir)
    transformers.logging.set_verbosity_error()
    metrics_file = Path(model_dir, "metrics.json")
    if not metrics_file.is_file():
        raise UserError(f"no metrics.json in {model_dir}: train it with train_model.py (or leave MODEL_DIR empty)")
    metrics = json.loads(metrics_file.read_text())

    started = time.perf_counter()
    unk, valid_word_count = unk_rate(tokenizer.backend_tokenizer, load_stories(str(valid_path))["text"])
    real_texts, held_out = held_out_stories(valid_path, config.NUM_SEEDS, config.VALID_WORDS)
    refs = references(train_path, held_out)
    ngrams = load_ngram_model(model_dir)
    seeds = [config.SEED + i for i in range(config.NUM_SEEDS)]
    beams = config.NUM_BEAMS
    beam_before, beam_now = replace(BEFORE, num_beams=beams), replace(WriteOptions(), num_beams=beams)

    def real_text_rows():
        eot = tokenizer.eos_token_id
        rows = []
        for text in real_texts:
            ids = [token for story in text.split("\n")
                   for token in tokenizer(story, add_special_tokens=False)["input_ids"] + [eot]]
            rows.append((ids[:-1], None, text))
        return rows

    @cache
    def markov_chain():
        return MarkovChain(tokenizer, read_stories(train_path))

    def markov_rows(digits):
        ids, text = markov_text(markov_chain(), tokenizer, digits, config.MARKOV_BEAMS)
        return [(ids, verify(text, digits, "basic").ok, text)]

    settings = []  # (label, digits, make texts)
    for n in [config.NUM_DIGITS] + ([config.LONG_DIGITS] if config.LONG_DIGITS else []):
        digits = get_digits("pi", n)
        for label, options, row_seeds in [
                (f"Pilish beam {beams}, {n:,} digits, before", beam_before, seeds[:1]),
                (f"Pilish beam {beams}, {n:,} digits", beam_now, seeds[:1]),
                (f"Pilish sample, {n:,} digits, before", replace(beam_before, decoding="sample"), seeds),
                (f"Pilish sample, {n:,} digits", replace(beam_now, decoding="sample"), seeds)]:
            settings.append((label, n, lambda d=digits, o=options, s=row_seeds: pilish_texts(
                model, tokenizer, d, s, o, ngrams=ngrams)))
        if config.MARKOV_BEAMS:
            settings.append((f"Markov chain (peer), beam {config.MARKOV_BEAMS}, {n:,} digits", n,
                             lambda d=digits: markov_rows(d)))
    settings += [
        (f"free sample, {config.FREE_TOKENS} tokens (reference)", None, lambda: free_samples(model, tokenizer, config, seeds)),
        (f"real stories, held out, {config.VALID_WORDS} words (reference)", None, real_text_rows),
    ]
    headers = ["setting", "texts", *FLUENCY_HEADERS, "NLL/word", "exact", "s/text"]
    rows = []
    with torch.inference_mode():
        for label, n, make in settings:
            began = time.perf_counter()
            texts = make()
            seconds = (time.perf_counter() - began) / len(texts)
            nlls = [nll_per_word(model, tokenizer, ids) for ids, _, _ in texts]
            rows.append([label, len(texts), *fluency_cells(texts, refs), f"{median(nlls):.3f}", exact_cell(texts),
                         "–" if n is None else f"{seconds:.1f}"])
            print(" | ".join(str(cell) for cell in rows[-1]), flush=True)
    score_seconds = time.perf_counter() - started

    notes = [
        f"model: {metrics.get('parameters', 0) / 1e6:.2f}M parameters, vocabulary {len(tokenizer):,}; "
        f"{metrics.get('steps')} steps, {metrics.get('tokens_seen', 0):,} tokens seen"
        + ("" if config.MODEL_DIR else f" (MAX_STEPS {config.MAX_STEPS}, BATCH_SIZE {config.BATCH_SIZE}, "
                                      f"DROPOUT {config.DROPOUT})")
        + ("; n-gram mix: " + ("MODEL_DIR/ngrams.pt" if ngrams else "none (no ngrams.pt)")),
        f"validation loss {metrics['valid_loss']:.3f}, perplexity {metrics['valid_perplexity']:.1f} "
        f"({valid_path.name}); training loss {metrics.get('train_loss', float('nan')):.3f}; "
        f"[UNK] rate of {valid_path.name}'s words: {unk:.2%} of {valid_word_count:,}",
        f"fluency (pilish/fluency.py): share of the texts' word bigrams / trigrams found in {train_path.name} "
        f"({refs['train'].words:,} words, what the model saw), and in held-out text ({valid_path.name} "
        f"less the real-text row: {refs['held out'].words:,} words, seen by neither the model nor the "
        f"prior); immediate repeats: bigrams of one word twice; good sentence ends: sentences whose last two "
        f"words end a sentence in {train_path.name}; words/sentence: words per closing mark; bad quotes: quote marks that do not read as dialogue / all",
        "before: pilish_generate's settings before issue 11 (no_repeat_ngram_size 3 and repetition_penalty "
        "1.2 within the window, nothing over the whole text, no prior); otherwise its defaults; beam rows "
        f"are deterministic (one text), sample rows use seeds {seeds[0]}–{seeds[-1]}",
        "Markov chain: bench/markov_pilish.py, stupid backoff over the token trigrams of "
        f"{train_path.name} seen at least twice, no model (its first row's s/text includes counting them)",
        "NLL/word: nats per word (punctuation tokens' NLL included) under the model alone, after <|endoftext|>",
        f"time: training {train_seconds:.0f} s" + (" (reused MODEL_DIR)" if config.MODEL_DIR else "")
        + f", scoring {score_seconds:.0f} s; s/text: seconds to write one text",
    ]
    report(__file__, headers, rows, notes, enabled=config.RECORD)
    work.cleanup()


if __name__ == "__main__":
    run_script(main, globals())
