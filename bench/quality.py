"""Quality on the real TinyStories sample: how well the model learns it and how well its Pilish reads.

    python bench/quality.py                           # trains for MAX_STEPS on CPU: about 15 minutes on 2 cores
    python bench/quality.py --model_dir=model         # score an already trained model instead
    python bench/quality.py --max_steps=600 --num_seeds=5 --long_digits=0

Trains a tokenizer and a model on TRAIN_FILE (validation on VALID_FILE) with train_model.py's defaults
except MAX_STEPS, BATCH_SIZE and DROPOUT, then reports the validation loss and perplexity, the [UNK]
rate of VALID_FILE's words, and for Pilish of NUM_DIGITS and LONG_DIGITS digits of pi (beam search and
sampling, with pilish_generate's defaults and with the settings before issue 11): the fluency measure
of fluency.py against TRAIN_FILE (what the model saw) and against held-out text (VALID_FILE, less the
stories used as the real-text row), immediate repeats, sentence ends, quotes, the NLL per word under
the unconstrained model and whether each text is exact, next to the model's own free samples and
real held-out stories. Appends the table to BENCHMARKS.md.
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
FREE_TOKENS = 150  # tokens per free sample (the reference for what the model writes unconstrained)
VALID_WORDS = 1000  # words of held-out real text per row text (NUM_SEEDS texts, from VALID_FILE)
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # training seed and first generation seed

import json
import tempfile
import time
from pathlib import Path

from _bench import data_file, median, report  # first: it puts the repo root on sys.path
from common import UserError, configure, detokenize, load_model, load_stories, run_script


def train(config, train_path, valid_path, folder):
    """Tokenizer and model trained with the project's own scripts into `folder`; the model folder."""
    import train_model
    import train_tokenizer
    tokenizer_dir, model_dir = f"{folder}/tokenizer", f"{folder}/model"
    train_tokenizer.main(configure(vars(train_tokenizer), [f"--dataset={train_path}", f"--tokenizer_dir={tokenizer_dir}"]))
    train_model.main(configure(vars(train_model), [
        f"--dataset={train_path}", f"--valid_dataset={valid_path}", f"--tokenizer_dir={tokenizer_dir}",
        f"--model_dir={model_dir}", f"--max_steps={config.MAX_STEPS}", f"--batch_size={config.BATCH_SIZE}",
        f"--dropout={config.DROPOUT}", f"--seed={config.SEED}"]))
    return model_dir


# pilish_generate's settings before issue 11 (a sliding window's repetition rules only, no prior)
BEFORE = dict(no_repeat_ngram_size=3, repetition_penalty=1.2, no_repeat_words=0, no_immediate_repeat=False,
              bigram_bonus=0.0, trigram_bonus=0.0, mark_bonus=0.0, balance_quotes=False)


def pilish_texts(model, tokenizer, digits, seeds, decoding, num_beams=None, **options):
    """[(token ids, exact, text)] of one Pilish text per seed, through pilish.write with pilish_generate's
    defaults but for `decoding`, `num_beams` and `options` (e.g. allow_punctuation=False, or BEFORE)."""
    import pilish
    import pilish_generate as defaults
    from transformers import set_seed
    settings = dict(rules=defaults.RULES, allow_punctuation=defaults.ALLOW_PUNCTUATION,
                    punctuation_lookahead=defaults.PUNCTUATION_LOOKAHEAD, no_repeat_ngram_size=defaults.NO_REPEAT_NGRAM_SIZE,
                    repetition_penalty=defaults.REPETITION_PENALTY, no_repeat_words=defaults.NO_REPEAT_WORDS,
                    no_immediate_repeat=defaults.NO_IMMEDIATE_REPEAT, bigram_bonus=defaults.BIGRAM_BONUS,
                    trigram_bonus=defaults.TRIGRAM_BONUS, mark_bonus=defaults.MARK_BONUS,
                    balance_quotes=defaults.BALANCE_QUOTES, topic=defaults.TOPIC)
    settings.update(options)
    settings.update(pilish.decoding_settings(
        decoding, num_beams or defaults.NUM_BEAMS, defaults.TEMPERATURE, defaults.TOP_K, defaults.TOP_P,
        settings.pop("no_repeat_ngram_size"), settings.pop("repetition_penalty")))
    prior = settings["bigram_bonus"] or settings["trigram_bonus"] or settings["mark_bonus"]
    ngrams = pilish.load_ngrams(model.name_or_path) if prior else None
    texts = []
    for seed in seeds:
        set_seed(seed)
        written = pilish.write(model, tokenizer, digits, ngrams=ngrams, **settings)
        texts.append((written.ids, written.verification.ok, written.text))
    return texts


def free_samples(model, tokenizer, config, seeds):
    """[(token ids, None)]: FREE_TOKENS tokens each, sampled after <|endoftext|> with generate.py's settings
    (the end token suppressed, as the Pilish processor bans it too)."""
    import torch
    from transformers import set_seed

    import generate as settings  # its default sampling settings
    start = torch.tensor([[tokenizer.eos_token_id]], device=model.device)
    texts = []
    for seed in seeds:
        set_seed(seed)
        output = model.generate(
            start, attention_mask=torch.ones_like(start), do_sample=True, temperature=settings.TEMPERATURE,
            top_k=settings.TOP_K, top_p=settings.TOP_P, max_new_tokens=config.FREE_TOKENS,
            min_new_tokens=config.FREE_TOKENS, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, use_cache=True)
        ids = output[0, 1:].tolist()
        texts.append((ids, None, detokenize(tokenizer, ids)))
    return texts


def held_out_stories(path, config):
    """(NUM_SEEDS texts of about VALID_WORDS words of real stories from the start of `path`, the rest of
    its stories): the texts are the real-text row; the rest is the held-out reference, which neither
    the model nor the n-gram prior saw."""
    import fluency
    stories = fluency.read_stories(path)
    texts, current, words = [], [], 0
    for used, story in enumerate(stories, start=1):
        current.append(story)
        words += len(fluency.words(story))
        if words >= config.VALID_WORDS:
            texts.append("\n".join(current))
            current, words = [], 0
            if len(texts) == config.NUM_SEEDS:
                return texts, stories[used:]
    raise UserError(f"{path} has fewer than {config.NUM_SEEDS} x {config.VALID_WORDS} words")


def percent(value):
    return "–" if value != value else f"{value:.1%}"


def main(config):
    import torch
    import transformers

    import fluency
    import pilish
    import train_tokenizer
    from pilish import get_digits

    if min(config.MAX_STEPS, config.BATCH_SIZE, config.NUM_DIGITS, config.NUM_SEEDS, config.NUM_BEAMS,
           config.FREE_TOKENS, config.VALID_WORDS) < 1 or config.LONG_DIGITS < 0:
        raise UserError("MAX_STEPS, BATCH_SIZE, NUM_DIGITS, NUM_SEEDS, NUM_BEAMS, FREE_TOKENS and VALID_WORDS "
                        "must be at least 1, LONG_DIGITS at least 0")
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
    unk, valid_word_count = train_tokenizer.unk_rate(tokenizer.backend_tokenizer, load_stories(str(valid_path))["text"])
    real_texts, held_out = held_out_stories(valid_path, config)
    references = {"train": fluency.build_reference(fluency.read_stories(train_path)),
                  "held out": fluency.build_reference(held_out)}
    seeds = [config.SEED + i for i in range(config.NUM_SEEDS)]
    beams = config.NUM_BEAMS

    def real_text_rows():
        eot = tokenizer.eos_token_id
        rows = []
        for text in real_texts:
            ids = [token for story in text.split("\n")
                   for token in tokenizer(story, add_special_tokens=False)["input_ids"] + [eot]]
            rows.append((ids[:-1], None, text))
        return rows

    settings = []  # (label, digits, make texts)
    for n in [config.NUM_DIGITS] + ([config.LONG_DIGITS] if config.LONG_DIGITS else []):
        digits = get_digits("pi", n)
        settings += [
            (f"Pilish beam {beams}, {n:,} digits, before", n, lambda d=digits: pilish_texts(
                model, tokenizer, d, seeds[:1], "beam", beams, **BEFORE)),
            (f"Pilish beam {beams}, {n:,} digits", n, lambda d=digits: pilish_texts(
                model, tokenizer, d, seeds[:1], "beam", beams)),
            (f"Pilish sample, {n:,} digits, before", n, lambda d=digits: pilish_texts(
                model, tokenizer, d, seeds, "sample", beams, **BEFORE)),
            (f"Pilish sample, {n:,} digits", n, lambda d=digits: pilish_texts(
                model, tokenizer, d, seeds, "sample", beams)),
        ]
    settings += [
        (f"free sample, {config.FREE_TOKENS} tokens (reference)", None, lambda: free_samples(model, tokenizer, config, seeds)),
        (f"real stories, held out, {config.VALID_WORDS} words (reference)", None, real_text_rows),
    ]
    headers = ["setting", "texts", "bigrams", "trigrams", "held-out bigrams", "held-out trigrams",
               "immediate repeats", "good sentence ends", "words/sentence", "bad quotes", "NLL/word", "exact", "s/text"]
    rows = []
    with torch.inference_mode():
        for label, n, make in settings:
            began = time.perf_counter()
            texts = make()
            seconds = (time.perf_counter() - began) / len(texts)
            counts = {name: sum((fluency.measure(text, ref) for _, _, text in texts), fluency.Fluency())
                      for name, ref in references.items()}
            nlls = [pilish.nll_per_word(model, tokenizer, ids) for ids, _, _ in texts]
            exact = [ok for _, ok, _ in texts]
            train_counts, held_counts = counts["train"], counts["held out"]
            rows.append([
                label, len(texts), percent(train_counts.bigram_share), percent(train_counts.trigram_share),
                percent(held_counts.bigram_share), percent(held_counts.trigram_share),
                percent(train_counts.repeat_share), percent(train_counts.good_end_share),
                f"{train_counts.words_per_sentence:.1f}", f"{train_counts.bad_quotes}/{train_counts.quotes}",
                f"{median(nlls):.3f}",
                "–" if exact[0] is None else f"{'✓' if all(exact) else '✗'} {sum(exact)}/{len(exact)}",
                "–" if n is None else f"{seconds:.1f}"])
            print(" | ".join(str(cell) for cell in rows[-1]), flush=True)
    score_seconds = time.perf_counter() - started

    notes = [
        f"model: {metrics.get('parameters', 0) / 1e6:.2f}M parameters, vocabulary {len(tokenizer):,}; "
        f"{metrics.get('steps')} steps, {metrics.get('tokens_seen', 0):,} tokens seen"
        + ("" if config.MODEL_DIR else f" (MAX_STEPS {config.MAX_STEPS}, BATCH_SIZE {config.BATCH_SIZE}, "
                                      f"DROPOUT {config.DROPOUT})")
        + ("; n-gram prior: " + ("MODEL_DIR/ngrams.pt" if pilish.load_ngrams(model_dir) else "none (no ngrams.pt)")),
        f"validation loss {metrics['valid_loss']:.3f}, perplexity {metrics['valid_perplexity']:.1f} "
        f"({valid_path.name}); training loss {metrics.get('train_loss', float('nan')):.3f}; "
        f"[UNK] rate of {valid_path.name}'s words: {unk:.2%} of {valid_word_count:,}",
        f"fluency (fluency.py): share of the texts' word bigrams / trigrams found in {train_path.name} "
        f"({references['train'].words:,} words, what the model saw), and in held-out text ({valid_path.name} "
        f"less the real-text row: {references['held out'].words:,} words, seen by neither the model nor the "
        f"prior); immediate repeats: bigrams of one word twice; good sentence ends: sentences whose last two "
        f"words end a sentence in {train_path.name}; words/sentence: words per closing mark; bad quotes: quote marks that do not read as dialogue / all",
        "before: pilish_generate's settings before issue 11 (no_repeat_ngram_size 3 and repetition_penalty "
        "1.2 within the window, nothing over the whole text, no prior); otherwise its defaults; beam rows "
        f"are deterministic (one text), sample rows use seeds {seeds[0]}–{seeds[-1]}",
        "NLL/word: nats per word (punctuation tokens' NLL included) under the model alone, after <|endoftext|>",
        f"time: training {train_seconds:.0f} s" + (" (reused MODEL_DIR)" if config.MODEL_DIR else "")
        + f", scoring {score_seconds:.0f} s; s/text: seconds to write one text",
    ]
    report(__file__, headers, rows, notes, enabled=config.RECORD)
    work.cleanup()


if __name__ == "__main__":
    run_script(main, globals())
