"""The n-gram model beside the neural one: held-out perplexity of each and of their mix, and its build cost.

    python -m bench.ngram_mix --model_dir=model          # about a minute on 2 CPU cores
    python -m bench.ngram_mix --model_dir=model --scales=1 --weights="0|0.3|1" --record=false

Builds pilish/ngram.py's Kneser-Ney trigram model of TRAIN_FILE (under MODEL_DIR's tokenizer, as
train_model.py does) and reports the perplexity per token of VALID_FILE's stories, each read after
<|endoftext|> and ending with it, under the model alone (weight 0), the n-gram model alone (weight
1) and their mixes for each of WEIGHTS: linear, (1 - w) P_model + w P_ngram, and log-linear,
P_model^(1 - w) P_ngram^w normalized over the vocabulary: the mix pilish_generate.py's NGRAM_WEIGHT sets. Held-out perplexity is a measure no decoder can game. Then the build time and the
file size for TRAIN_FILE repeated SCALES times (repetition adds counts but no new n-grams: the time
grows with the tokens, the file with the distinct n-grams). Appends both tables to BENCHMARKS.md.
"""

MODEL_DIR = "model"  # a model folder from train_model.py
TRAIN_FILE = ""  # the stories the n-gram model counts ("" = the bundled sample, data/tinystories-sample)
VALID_FILE = ""  # held-out stories ("" = the bundled sample's validation stories)
WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # n-gram weights w ("|"-separated)
SCALES = [1, 20]  # build the n-gram model from TRAIN_FILE repeated this many times ("|"-separated)
RECORD = True  # append the results to BENCHMARKS.md

import math
import tempfile
import time
from pathlib import Path

from bench.support import data_file, report
from lmkit.data import load_stories
from lmkit.folders import load_model
from lmkit.scoring import context_window
from lmkit.settings import UserError, run_script
from pilish.ngram import NGRAMS_FILE, ngram_model, save_ngram_model

def log_probs(model, ngrams, ids):
    """([tokens, V], [tokens, V]): the model's and the n-gram model's log-probabilities of each next
    token of one story (token ids) read after <|endoftext|>, up to the <|endoftext|> that ends it."""
    import torch
    eot = ngrams.boundary_id
    text = torch.tensor([eot, *ids, eot][:context_window(model) + 1], device=model.device)
    model_part = model(text[:-1].unsqueeze(0)).logits[0].float().log_softmax(dim=-1).cpu()
    padded = [eot, *text.tolist()]
    contexts = torch.tensor([padded[i:i + 2] for i in range(len(text) - 1)])
    return model_part[:, :ngrams.vocab_size], ngrams.probs(contexts).log()


def perplexities(model, ngrams, stories, weights):
    """{weight: (linear mix's perplexity, log-linear mix's)} per token of `stories`. Linear:
    (1 - w) P_model + w P_ngram; log-linear: P_model^(1 - w) P_ngram^w, normalized over the vocabulary."""
    import torch
    linear, log_linear, tokens = torch.zeros(len(weights)), torch.zeros(len(weights)), 0
    for ids in stories:
        model_part, ngram_part = log_probs(model, ngrams, ids)
        following = torch.tensor([*ids, ngrams.boundary_id][:len(model_part)])
        rows = torch.arange(len(following))
        model_true, ngram_true = model_part[rows, following], ngram_part[rows, following]
        for k, w in enumerate(weights):
            linear[k] -= torch.logaddexp(model_true + math.log1p(-w) if w < 1 else torch.tensor(-math.inf),
                                         ngram_true + math.log(w) if w > 0 else torch.tensor(-math.inf)).sum()
            mixed = (1 - w) * model_part + w * ngram_part
            log_linear[k] -= ((1 - w) * model_true + w * ngram_true - mixed.logsumexp(dim=-1)).sum()
        tokens += len(following)
    return {w: (math.exp(linear[k] / tokens), math.exp(log_linear[k] / tokens)) for k, w in enumerate(weights)}, tokens


def build_cost(tokenizer, stories, scale):
    """(seconds, MB of NGRAMS_FILE, distinct trigrams) of the n-gram model of `stories` repeated `scale` times."""
    started = time.perf_counter()
    ngrams = ngram_model(tokenizer, stories * scale)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        save_ngram_model(folder, ngrams)
        size = Path(folder, NGRAMS_FILE).stat().st_size / 1e6
    return seconds, size, len(ngrams.trigrams.keys)


def numbers(items, name, kind, low, high=math.inf):
    """The list setting `name` (strings from the command line) as numbers of `kind` within [low, high]."""
    try:
        values = [kind(item) for item in items]
    except ValueError:
        values = []
    if not values or not all(low <= value <= high for value in values):
        raise UserError(f"{name} takes {kind.__name__}s from {low} to {high}, not {items}")
    return values


def main(config):
    import torch
    import transformers

    weights, scales = numbers(config.WEIGHTS, "WEIGHTS", float, 0, 1), numbers(config.SCALES, "SCALES", int, 1)
    train_path, valid_path = data_file(config.TRAIN_FILE, "train"), data_file(config.VALID_FILE, "validation")
    model, tokenizer = load_model(config.MODEL_DIR)
    transformers.logging.set_verbosity_error()
    train_stories = list(load_stories(str(train_path))["text"])
    started = time.perf_counter()
    ngrams = ngram_model(tokenizer, train_stories)
    build_seconds = time.perf_counter() - started
    valid = [encoding.ids for encoding in
             tokenizer.backend_tokenizer.encode_batch(list(load_stories(str(valid_path))["text"]),
                                                      add_special_tokens=False)]
    with torch.inference_mode():
        found, tokens = perplexities(model, ngrams, valid, weights)

    rows = []
    for weight, (linear, log_linear) in found.items():
        label = {0.0: "model alone", 1.0: "n-gram model alone"}.get(weight, "mix")
        rows.append([f"{weight:g}", label, f"{linear:.2f}", f"{log_linear:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    best = min(found, key=lambda weight: found[weight][1])
    notes = [f"perplexity per token of {valid_path.name} ({tokens:,} tokens, {len(valid):,} stories, each "
             f"after <|endoftext|> and ending with it, cut to the model's context) under the linear mix "
             f"(1 - w) P_model + w P_ngram and the log-linear one, P_model^(1 - w) P_ngram^w normalized (what "
             f"pilish_generate mixes); model {config.MODEL_DIR}; n-gram model: Kneser-Ney trigrams of "
             f"{train_path.name} ({len(train_stories):,} stories, built in {build_seconds:.1f} s); log-linear "
             f"lowest at w = {best:g}"]
    report(__file__, ["n-gram weight w", "", "linear mix", "log-linear mix"], rows, notes, enabled=config.RECORD)

    rows = []
    for scale in scales:
        seconds, size, trigrams = build_cost(tokenizer, train_stories, scale)
        rows.append([f"{scale}x", f"{len(train_stories) * scale:,}", f"{seconds:.1f}", f"{size:.1f}",
                     f"{trigrams:,}"])
        print(" | ".join(rows[-1]), flush=True)
    notes = [f"the n-gram model of {train_path.name} repeated SCALE times: build time (tokenizing included, "
             f"as train_model.py builds it) and the size of {NGRAMS_FILE}; repetition adds tokens, not "
             "distinct n-grams"]
    report(__file__, ["scale", "stories", "build s", f"{NGRAMS_FILE} MB", "distinct trigrams"], rows, notes,
           enabled=config.RECORD)


if __name__ == "__main__":
    run_script(main, globals())
