"""Quality on the real TinyStories sample: how well the model learns it and how fluent its Pilish is.

    python bench/quality.py                           # trains for MAX_STEPS on CPU: about 15 minutes on 2 cores
    python bench/quality.py --model_dir=model         # score an already trained model instead
    python bench/quality.py --max_steps=600 --num_seeds=5

Trains a tokenizer and a model on TRAIN_FILE (validation on VALID_FILE) with train_model.py's defaults
except MAX_STEPS, BATCH_SIZE and DROPOUT, then reports the validation loss and perplexity, the [UNK]
rate of VALID_FILE's words, and for 100 digits of pi: the NLL per word of the Pilish under the
unconstrained model, the share of distinct word 3-grams and whether each text is exact, next to the
model's own free samples and the validation text itself. Appends the table to BENCHMARKS.md.
"""

TRAIN_FILE = ""  # stories to train on ("" = the bundled sample, data/tinystories-sample/train.txt.gz)
VALID_FILE = ""  # validation stories ("" = the bundled sample, data/tinystories-sample/valid.txt.gz)
MODEL_DIR = ""  # a trained model to score ("" = train one into a temporary folder)
MAX_STEPS = 300  # training steps (x BATCH_SIZE x 256 tokens: ~10 passes over the sample)
BATCH_SIZE = 32  # blocks per training step
DROPOUT = 0.1  # the sample is small, so several passes over it: some dropout keeps it from memorizing
NUM_DIGITS = 100  # digits of pi per Pilish text
NUM_SEEDS = 3  # texts per sampled setting (seeds SEED, SEED + 1, ...); beam search is deterministic: one text
NUM_BEAMS = 8  # beams for the beam-search rows
FREE_TOKENS = 150  # tokens per free sample (the reference for what the model writes unconstrained)
VALID_WORDS = 1000  # words of validation text per reference chunk (NUM_SEEDS chunks)
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # training seed and first generation seed

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: common, train_model, ...

from _bench import data_file, median, report  # noqa: E402
from common import UserError, configure, join_tokens, load_model, load_stories, run_script  # noqa: E402


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


def text_words(tokenizer, ids):
    """The words (tokens with letters, special tokens aside) of a token sequence, in order."""
    from pilish import letters_in
    special = set(tokenizer.all_special_ids)
    return [token for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(list(ids)))
            if letters_in(token) and token_id not in special]


def distinct_trigrams(words):
    """Distinct word 3-grams / all word 3-grams (1.0 = the text never repeats three words in a row)."""
    trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return len(set(trigrams)) / len(trigrams) if trigrams else float("nan")


def score(model, tokenizer, ids, config, context_length):
    """(NLL per word under the model alone, distinct 3-grams over the first NUM_DIGITS words).

    pilish_generate.nll_per_word scores the tokens after an <|endoftext|> and counts the words without
    the special tokens, so the validation text (stories separated by <|endoftext|>) scores the same way.
    """
    import pilish_generate
    nll = pilish_generate.nll_per_word(model, tokenizer, (), list(ids), context_length)
    return nll, distinct_trigrams(text_words(tokenizer, ids)[:config.NUM_DIGITS])


def pilish_texts(model, tokenizer, digits, settings, seeds):
    """[(token ids, exact)] of one Pilish text per seed, through pilish_generate.write_pilish."""
    import pilish_generate
    from pilish import verify
    from transformers import set_seed
    texts = []
    for seed in seeds:
        set_seed(seed)
        generated = pilish_generate.write_pilish(model, tokenizer, digits, settings)
        text = pilish_generate.finish_sentence(join_tokens(tokenizer.convert_ids_to_tokens(generated)))
        texts.append((generated, verify(text, digits, settings.RULES).ok))
    return texts


def free_samples(model, tokenizer, config, seeds):
    """[(token ids, None)]: FREE_TOKENS tokens each, sampled after <|endoftext|> with generate.py's settings
    (the end token suppressed, as the Pilish processor bans it too)."""
    import torch
    from transformers import set_seed

    import generate
    settings = configure(vars(generate), [])
    start = torch.tensor([[tokenizer.eos_token_id]], device=model.device)
    texts = []
    for seed in seeds:
        set_seed(seed)
        output = model.generate(
            start, attention_mask=torch.ones_like(start), do_sample=True, temperature=settings.TEMPERATURE,
            top_k=settings.TOP_K, top_p=settings.TOP_P, max_new_tokens=config.FREE_TOKENS,
            min_new_tokens=config.FREE_TOKENS, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, use_cache=True)
        texts.append((output[0, 1:].tolist(), None))
    return texts


def validation_chunks(tokenizer, stories, config):
    """NUM_SEEDS consecutive chunks of VALID_WORDS words of the validation text, as the model saw text in
    training (stories ended by <|endoftext|>)."""
    from pilish import letters_in
    eot = tokenizer.eos_token_id
    chunks, current, words = [], [], 0
    for batch in stories.iter(batch_size=200):
        for ids in tokenizer(batch["text"], add_special_tokens=False)["input_ids"]:
            for token_id, token in zip(ids + [eot], tokenizer.convert_ids_to_tokens(ids + [eot])):
                current.append(token_id)
                words += letters_in(token) > 0 and token_id != eot
                if words == config.VALID_WORDS:
                    chunks.append((current, None))
                    current, words = [], 0
                    if len(chunks) == config.NUM_SEEDS:
                        return chunks
    raise UserError(f"the validation text has fewer than {config.NUM_SEEDS} x {config.VALID_WORDS} words")


def main(config):
    import torch
    import transformers

    import pilish_generate
    import train_tokenizer
    from pilish import get_digits

    if min(config.MAX_STEPS, config.BATCH_SIZE, config.NUM_DIGITS, config.NUM_SEEDS, config.NUM_BEAMS,
           config.FREE_TOKENS, config.VALID_WORDS) < 1:
        raise UserError("MAX_STEPS, BATCH_SIZE, NUM_DIGITS, NUM_SEEDS, NUM_BEAMS, FREE_TOKENS and VALID_WORDS "
                        "must be at least 1")
    valid_path = data_file(config.VALID_FILE, "validation")
    work = tempfile.TemporaryDirectory(prefix="bench-quality-")
    started = time.perf_counter()
    if config.MODEL_DIR:
        model_dir = config.MODEL_DIR
    else:
        model_dir = train(config, data_file(config.TRAIN_FILE, "train"), valid_path, work.name)
    train_seconds = time.perf_counter() - started
    model, tokenizer = load_model(model_dir)
    transformers.logging.set_verbosity_error()
    metrics_file = Path(model_dir, "metrics.json")
    if not metrics_file.is_file():
        raise UserError(f"no metrics.json in {model_dir}: train it with train_model.py (or leave MODEL_DIR empty)")
    metrics = json.loads(metrics_file.read_text())
    context_length = model.config.n_positions

    started = time.perf_counter()
    valid_stories = load_stories(str(valid_path))
    unk, valid_word_count = train_tokenizer.unk_rate(tokenizer.backend_tokenizer, valid_stories["text"])
    digits = get_digits("pi", config.NUM_DIGITS)
    seeds = [config.SEED + i for i in range(config.NUM_SEEDS)]

    def pilish_settings(*overrides):
        return configure(vars(pilish_generate), [f"--num_digits={config.NUM_DIGITS}",
                                                 f"--num_beams={config.NUM_BEAMS}", *overrides])

    settings = [  # (label, [(ids, exact)])
        ("Pilish sample, no punctuation", lambda: pilish_texts(
            model, tokenizer, digits, pilish_settings("--decoding=sample", "--allow_punctuation=false"), seeds)),
        ("Pilish sample, punctuation", lambda: pilish_texts(
            model, tokenizer, digits, pilish_settings("--decoding=sample", "--allow_punctuation=true"), seeds)),
        (f"Pilish beam {config.NUM_BEAMS}, punctuation (deterministic)", lambda: pilish_texts(
            model, tokenizer, digits, pilish_settings("--decoding=beam", "--allow_punctuation=true"), seeds[:1])),
        ("Pilish sample, punctuation, no look-ahead", lambda: pilish_texts(
            model, tokenizer, digits, pilish_settings("--decoding=sample", "--punctuation_lookahead=false"), seeds)),
        (f"Pilish beam {config.NUM_BEAMS}, punctuation, no look-ahead", lambda: pilish_texts(
            model, tokenizer, digits, pilish_settings("--decoding=beam", "--punctuation_lookahead=false"), seeds[:1])),
        (f"free sample, {config.FREE_TOKENS} tokens (reference)",
         lambda: free_samples(model, tokenizer, config, seeds)),
        (f"validation text, {config.VALID_WORDS} words (reference)",
         lambda: validation_chunks(tokenizer, valid_stories, config)),
    ]
    headers = ["setting", "texts", "NLL/word median (min–max)", "distinct 3-grams", "exact"]
    rows = []
    with torch.inference_mode():
        for label, make in settings:
            texts = make()
            scores = [score(model, tokenizer, ids, config, context_length) for ids, _ in texts]
            nlls = [nll for nll, _ in scores]
            exact = [ok for _, ok in texts]
            rows.append([label, len(texts), f"{median(nlls):.3f} ({min(nlls):.3f}–{max(nlls):.3f})",
                         f"{median([d for _, d in scores]):.3f}",
                         "–" if exact[0] is None else f"{'✓' if all(exact) else '✗'} {sum(exact)}/{len(exact)}"])
    score_seconds = time.perf_counter() - started

    notes = [
        f"model: {metrics.get('parameters', 0) / 1e6:.2f}M parameters, vocabulary {len(tokenizer):,}; "
        f"{metrics.get('steps')} steps, {metrics.get('tokens_seen', 0):,} tokens seen"
        + ("" if config.MODEL_DIR else f" (MAX_STEPS {config.MAX_STEPS}, BATCH_SIZE {config.BATCH_SIZE}, "
                                      f"DROPOUT {config.DROPOUT})"),
        f"validation loss {metrics['valid_loss']:.3f}, perplexity {metrics['valid_perplexity']:.1f} "
        f"({valid_path.name}); training loss {metrics.get('train_loss', float('nan')):.3f}",
        f"[UNK] rate of {valid_path.name}'s words: {unk:.2%} of {valid_word_count:,}",
        f"NLL/word: nats per word (punctuation tokens' NLL included) under the model alone, after "
        f"<|endoftext|>, through pilish_generate.nll_per_word; distinct 3-grams over each text's first "
        f"{config.NUM_DIGITS} words; {config.NUM_DIGITS} digits of pi, pilish_generate's other defaults",
        f"time: training {train_seconds:.0f} s" + (" (reused MODEL_DIR)" if config.MODEL_DIR else "")
        + f", scoring {score_seconds:.0f} s",
    ]
    report(__file__, headers, rows, notes, enabled=config.RECORD)
    work.cleanup()


if __name__ == "__main__":
    run_script(main, globals())
