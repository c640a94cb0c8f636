"""What the Pilish benchmarks (quality.py, pilish_search.py) share; not a benchmark itself.

The settings before issue 11 as `WriteOptions`, writing one text per seed, the slice of held-out
real stories, and the fluency columns of their tables (pilish/fluency.py's measure against the
training stories and against held-out ones).
"""

from dataclasses import fields, replace

from lmkit.settings import UserError
from pilish import fluency
from pilish.writing import WriteOptions, write

# pilish_generate's window rules alone (no_repeat_ngram_size 3 and repetition_penalty 1.2 within each
# window, its defaults until 2026-12-05): no whole-text rule, no prior, no quote balancing, no look-ahead
WINDOW_RULES = replace(WriteOptions(), no_repeat_ngram_size=3, repetition_penalty=1.2, no_repeat_words=0,
                       no_immediate_repeat=False, ngram_weight=0.0, balance_quotes=False, lookahead_weight=0.0,
                       real_sentence_ends=False, sentence_bonus=0.0, unseen_pair_cost=0.0)
BEFORE = WINDOW_RULES  # pilish_generate's settings before issue 11 were its window rules alone
# the original blog's method: the model alone, sampled, under the mask alone, words only (no marks)
BLOG = WriteOptions(decoding="sample", allow_punctuation=False, no_repeat_words=0, no_immediate_repeat=False,
                    ngram_weight=0.0, balance_quotes=False, lookahead_weight=0.0, real_sentence_ends=False,
                    sentence_bonus=0.0, unseen_pair_cost=0.0)

FLUENCY_HEADERS = ["bigrams", "trigrams", "held-out bigrams", "held-out trigrams", "immediate repeats",
                   "good sentence ends", "words/sentence", "bad quotes"]


def pilish_texts(model, tokenizer, digits, seeds, options=WriteOptions(), ngrams=None, topic=""):
    """[(token ids, exact, text)]: one Pilish text of `digits` per seed, written with `options`
    (`ngrams`, from pilish.ngram.load_ngram_model, mixed at options.ngram_weight)."""
    from transformers import set_seed
    texts = []
    for seed in seeds:
        set_seed(seed)
        written = write(model, tokenizer, digits, options, ngrams=ngrams, topic=topic)
        texts.append((written.ids, written.verification.ok, written.text))
    return texts


def describe(options, base=WriteOptions()):
    """The fields of `options` that differ from `base` ("name=value, ..."), or "pilish_generate defaults"."""
    changed = [f"{item.name}={getattr(options, item.name)!r}" for item in fields(options)
               if getattr(options, item.name) != getattr(base, item.name)]
    return ", ".join(changed) or "pilish_generate defaults"


def held_out_stories(path, num_texts, words_per_text):
    """(`num_texts` texts of about `words_per_text` words of real stories from the start of `path`,
    the rest of its stories): the texts are the real-text row; the rest is the held-out reference,
    which neither the model nor the n-gram prior saw."""
    stories = fluency.read_stories(path)
    texts, current, words = [], [], 0
    for used, story in enumerate(stories, start=1):
        current.append(story)
        words += len(fluency.words(story))
        if words >= words_per_text:
            texts.append("\n".join(current))
            current, words = [], 0
            if len(texts) == num_texts:
                return texts, stories[used:]
    raise UserError(f"{path} has fewer than {num_texts} x {words_per_text} words")


def references(train_path, held_out):
    """{"train": the reference of the stories in `train_path`, "held out": that of `held_out`}."""
    return {"train": fluency.build_reference(fluency.read_stories(train_path)),
            "held out": fluency.build_reference(held_out)}


def fluency_counts(texts, reference):
    """The summed fluency.Fluency of the texts ([(ids, exact, text)]) against `reference`."""
    return sum((fluency.measure(text, reference) for _, _, text in texts), fluency.Fluency())


def fluency_cells(texts, refs):
    """The FLUENCY_HEADERS cells of `texts` against `refs` (from `references`)."""
    train, held = fluency_counts(texts, refs["train"]), fluency_counts(texts, refs["held out"])
    return [percent(train.bigram_share), percent(train.trigram_share), percent(held.bigram_share),
            percent(held.trigram_share), percent(train.repeat_share), percent(train.good_end_share),
            f"{train.words_per_sentence:.1f}", f"{train.bad_quotes}/{train.quotes}"]


def exact_cell(texts):
    """'✓ 3/3' when every text spells its digits, '✗ 2/3' when not, '–' for texts that spell none."""
    exact = [ok for _, ok, _ in texts]
    return "–" if exact[0] is None else f"{'✓' if all(exact) else '✗'} {sum(exact)}/{len(exact)}"


def percent(value):
    return "–" if value != value else f"{value:.1%}"
