"""pilish.writing: `write` and its WriteOptions on the tiny trained model: exact texts through the
sliding window, prompts and topics, the n-gram mix through a long text, the beams' shared prefill."""

from dataclasses import replace

import pytest
import torch

from lmkit.folders import load_model, load_tokenizer
from lmkit.scoring import context_window
from pilish import writing
from pilish.fluency import read_stories
from pilish.ngram import build_ngram_model, ngram_model
from pilish.processor import PilishLogitsProcessor
from pilish.rules import PilishError, get_digits, verify
from pilish.tokens import letters_in
from pilish.writing import WriteOptions, finish_sentence, write


# The old write()'s defaults: no WritingPrior (no whole-text rules, no n-gram mix, no quote pairing, no
# sentence rules), quotes allowed. Its decoding is WriteOptions' own (beam search, 8 beams), as the old
# decoding_settings() gave.
PLAIN = WriteOptions(no_repeat_words=0, no_immediate_repeat=False, ngram_weight=0.0, balance_quotes=False,
                     quotes=True, real_sentence_ends=False, sentence_bonus=0.0, unseen_pair_cost=0.0)
# The old write() with no generate arguments at all: greedy search, no repetition rules.
GREEDY = replace(PLAIN, decoding="beam", num_beams=1, no_repeat_ngram_size=0, repetition_penalty=1.0)


def test_sliding_window_keeps_a_long_text_exact(model_dir):
    model, tokenizer = load_model(model_dir)
    assert model.config.n_positions == 32
    digits = get_digits("pi", 150)
    for decoding in ("sample", "beam"):
        written = write(model, tokenizer, digits, replace(PLAIN, decoding=decoding))
        assert len(written.ids) > 4 * 32  # several contexts long
        assert written.verification.ok and written.prompt_digits == 0
        text = " ".join(tokenizer.convert_ids_to_tokens(written.ids))
        assert verify(text, digits, "basic").ok


def test_write_continues_a_prompt_and_returns_text_ids_and_positions(model_dir):
    model, tokenizer = load_model(model_dir)
    digits = get_digits("pi", 12)
    written = write(model, tokenizer, digits, replace(PLAIN, num_beams=2), prompt="Tom, a ball")
    assert written.prompt_digits == 3 and written.prompt_ids == tokenizer.convert_tokens_to_ids(["▁tom", ",", "▁a", "▁ball"])
    assert written.text.startswith("tom, a ball") and written.verification.ok
    assert written.verification == verify(written.text, digits, "basic")
    generated_words = [w for w in tokenizer.convert_ids_to_tokens(written.ids) if letters_in(w)]
    assert [letters_in(w) % 10 for w in generated_words] == [int(d) for d in digits[3:]]  # prompt not included


@pytest.mark.parametrize("options, message", [
    ({"prompt": "hello world"}, "prompt does not follow the digits"),
    ({"context_length": 3}, "too short"),
    ({"rules": "fancy"}, "unknown Pilish rules"),
])
def test_write_raises_pilish_errors_that_are_value_errors(model_dir, options, message):
    model, tokenizer = load_model(model_dir)
    fields = {name: value for name, value in options.items() if name != "prompt"}
    with pytest.raises(PilishError, match=message) as raised:
        write(model, tokenizer, "31415", replace(GREEDY, **fields), prompt=options.get("prompt", ""))
    assert isinstance(raised.value, ValueError)


def test_write_fails_fast_when_the_processor_makes_no_progress(model_dir, monkeypatch):
    model, tokenizer = load_model(model_dir)
    # a broken processor that never counts a digit: write must stop at once, not loop for ever
    monkeypatch.setattr(PilishLogitsProcessor, "positions", lambda self, input_ids: self._starts(input_ids.shape[0]))
    with pytest.raises(RuntimeError, match="no progress at digit 0"):
        write(model, tokenizer, get_digits("pi", 50), GREEDY)


def test_write_options_give_generate_its_decoding_arguments():
    assert WriteOptions(decoding="beam", num_beams=4, no_repeat_ngram_size=0,
                        repetition_penalty=1.0).generate_kwargs() == dict(
        do_sample=False, num_beams=4, early_stopping=True, no_repeat_ngram_size=None, repetition_penalty=None)
    assert WriteOptions(decoding="sample", temperature=0.5, top_k=0, top_p=0.9, no_repeat_ngram_size=2,
                        repetition_penalty=1.3).generate_kwargs() == dict(
        do_sample=True, temperature=0.5, top_k=None, top_p=0.9, no_repeat_ngram_size=2, repetition_penalty=1.3)
    with pytest.raises(PilishError, match="decoding must be one of beam, sample"):
        WriteOptions(decoding="greedy")


def test_write_options_count_the_rows_and_say_when_the_prior_is_on():
    assert (WriteOptions().rows, WriteOptions(num_beams=3).rows, WriteOptions(decoding="sample").rows) == (8, 3, 1)
    ngrams = build_ngram_model([[1, 2]], vocab_size=3, boundary_id=0)
    assert WriteOptions().uses_prior(None)  # the whole-text rules need no n-gram model
    assert not PLAIN.uses_prior(ngrams)
    mixed = replace(PLAIN, ngram_weight=0.5)
    assert mixed.uses_prior(ngrams) and not mixed.uses_prior(None)  # the mix needs the n-gram model
    for rule in (dict(no_immediate_repeat=True), dict(balance_quotes=True), dict(no_repeat_words=3)):
        assert replace(PLAIN, **rule).uses_prior(None), rule
    # real sentence ends (and the bonus, which only they get) need the n-gram model and its mix
    assert not replace(PLAIN, real_sentence_ends=True, sentence_bonus=3.0).uses_prior(ngrams)


def test_topic_is_read_first_but_spells_no_digits_and_is_not_printed(model_dir):
    model, tokenizer = load_model(model_dir)
    digits = get_digits("pi", 30)
    options = replace(PLAIN, num_beams=2)
    without_topic = write(model, tokenizer, digits, options)
    topic = "The dog ran to the kitchen."
    about_a_dog = write(model, tokenizer, digits, options, topic=topic)
    assert about_a_dog.verification.ok and about_a_dog.topic_ids == tokenizer.convert_tokens_to_ids(
        ["▁the", "▁dog", "▁ran", "▁to", "▁the", "▁kitchen", "."])
    assert about_a_dog.ids != without_topic.ids  # the topic changes what is written
    generated_words = [w for w in tokenizer.convert_ids_to_tokens(about_a_dog.ids) if letters_in(w)]
    assert [letters_in(w) % 10 for w in generated_words] == [int(d) for d in digits]  # the topic spells none
    assert not about_a_dog.text.startswith("the dog ran")


def test_topic_stays_pinned_through_the_sliding_window(model_dir, monkeypatch):
    model, tokenizer = load_model(model_dir)
    topic_ids = tokenizer.convert_tokens_to_ids(["▁the", "▁dog", "▁ran", "."])
    windows = []
    original = model.generate

    def spy(input_ids, **kwargs):
        windows.append(input_ids[0].tolist())
        return original(input_ids, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    digits = get_digits("pi", 80)
    written = write(model, tokenizer, digits, replace(PLAIN, decoding="sample"), topic="The dog ran.")
    assert written.verification.ok and len(windows) > 3
    assert all(window[:5] == [tokenizer.eos_token_id, *topic_ids] for window in windows)
    with pytest.raises(PilishError, match="topic is 20 tokens long"):
        write(model, tokenizer, digits, GREEDY, topic="the dog ran. " * 5)


def repeats(words, n):
    """Word n-grams of `words` that already occurred earlier in it (n=1: the same word twice in a row)."""
    if n == 1:
        return sum(a == b for a, b in zip(words, words[1:]))
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) - len(set(grams))


def test_whole_text_rules_and_the_ngram_mix_keep_a_long_text_exact(model_dir, corpus_file):
    model, tokenizer = load_model(model_dir)
    ngrams = ngram_model(tokenizer, read_stories(corpus_file))
    digits = get_digits("pi", 150)  # several windows of the 32-token model
    found = {}
    with_rules = replace(PLAIN, num_beams=4, no_repeat_words=3, no_immediate_repeat=True, ngram_weight=0.7)
    for options, ngrams in ((replace(PLAIN, num_beams=4), None), (with_rules, ngrams)):
        written = write(model, tokenizer, digits, options, ngrams=ngrams)
        assert written.verification.ok
        words = [w for w in tokenizer.convert_ids_to_tokens(written.ids) if letters_in(w)]
        found[ngrams is not None] = (repeats(words, 1), repeats(words, 3))
    # the corpus has one 1-letter word ("a"), so pi's "1 1" forces a repeat: rules yield to exactness
    assert found[True][0] <= found[False][0] and found[True][1] < found[False][1]


def test_beams_share_one_read_of_each_window_and_write_the_same_text(model_dir, monkeypatch):
    model, tokenizer = load_model(model_dir)
    digits = get_digits("pi", 120)  # several windows of the 32-token model
    caches, real_generate = [], model.generate

    def recording_generate(window_ids, **kwargs):
        cache = kwargs.get(writing._cache_argument())
        if cache is None:  # only the first window, <|endoftext|> alone, has nothing to share
            assert window_ids.tolist() == [[tokenizer.eos_token_id]]
        else:
            caches.append((window_ids.shape[1], cache.get_seq_length(), cache.layers[0].keys.shape[0]))
        return real_generate(window_ids, **kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    shared = write(model, tokenizer, digits, replace(PLAIN, num_beams=3))
    # every window came with a cache of all its tokens but the last, one copy per beam
    assert len(caches) > 2 and all(cached == length - 1 and rows == 3 for length, cached, rows in caches)
    monkeypatch.setattr(model, "generate", real_generate)
    monkeypatch.setattr(writing, "shared_prefill", lambda model, window_ids, copies: {})
    alone = write(model, tokenizer, digits, replace(PLAIN, num_beams=3))
    assert shared.ids == alone.ids and shared.verification.ok


def test_balanced_quotes_pair_up_through_a_long_text(model_dir, corpus_file):
    model, tokenizer = load_model(model_dir)
    ngrams = ngram_model(tokenizer, read_stories(corpus_file))
    opening, closing = tokenizer.convert_tokens_to_ids(['▁"', '"'])
    digits = get_digits("pi", 150)  # several windows of the 32-token model
    for decoding in ("beam", "sample"):
        options = replace(PLAIN, decoding=decoding, num_beams=4, ngram_weight=0.7, balance_quotes=True)
        torch.manual_seed(0)  # the sampled text must not depend on what the tests before this one drew
        written = write(model, tokenizer, digits, options, ngrams=ngrams)
        assert written.verification.ok
        depth, depths = 0, []
        for token in written.ids:
            depth += (token == opening) - (token == closing)
            depths.append(depth)
        assert written.ids.count(opening) > 0  # the corpus is full of dialogue, and the n-gram mix favours it
        assert set(depths) <= {0, 1}  # never a second opening quote, never a closing one with none open


def test_finish_sentence_ends_the_text_and_closes_its_quote():
    assert finish_sentence("tom ran") == "tom ran."
    assert finish_sentence("tom ran!") == "tom ran!"
    assert finish_sentence('he said, "go') == 'he said, "go."'
    assert finish_sentence('he said, "go!"') == 'he said, "go!"'
    assert finish_sentence('"hi," he said') == '"hi," he said.'


def test_write_reports_progress_and_clamps_the_window(model_dir):
    model, tokenizer = load_model(model_dir)
    assert [context_window(model, w) for w in (0, 20, 1000)] == [32, 20, 32]

    class Progress:
        total = 0

        def update(self, n):
            assert n >= 0
            self.total += n

    progress = Progress()
    digits = get_digits("pi", 40)
    written = write(model, tokenizer, digits, replace(PLAIN, decoding="sample"), prompt="Tom, a ball",
                    progress=progress)
    assert written.verification.ok and progress.total == 40
    with pytest.raises(PilishError, match="at least 1"):
        WriteOptions(num_beams=0)
    with pytest.raises(PilishError, match="between 0 and 1"):
        WriteOptions(ngram_weight=1.5)


def test_the_cache_argument_follows_the_installed_transformers(monkeypatch):
    from transformers.generation import utils
    monkeypatch.setattr(utils, "ALL_CACHE_NAMES", ["past_key_values", "cache"], raising=False)
    assert writing._cache_argument() == "cache"
    monkeypatch.setattr(utils, "ALL_CACHE_NAMES", ["past_key_values"], raising=False)
    assert writing._cache_argument() == "past_key_values"  # before transformers renamed it
    monkeypatch.delattr(utils, "ALL_CACHE_NAMES")
    assert writing._cache_argument() == "past_key_values"


def test_check_prompt_names_the_digits_it_refuses():
    with pytest.raises(PilishError, match="^the digits to spell must be a non-empty string of the digits 0-9"):
        writing.check_prompt(None, "how i", "", "basic")


def test_make_processors_start_at_the_first_digit_unless_told(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    _, processor, _ = writing.make_processors(tokenizer, "31415", PLAIN)
    assert int(processor.start_digit) == 0 and processor.positions(torch.tensor([[0], [0]])).tolist() == [0, 0]
    assert int(writing.make_processors(tokenizer, "31415", PLAIN, start_digit=3)[1].start_digit) == 3


def test_write_checks_the_prompt_under_its_own_rules(model_dir):
    """"characteristic" (14 letters) spells "14" under the standard rules, and no digit under the basic ones."""
    model, tokenizer = load_model(model_dir)
    digits = get_digits("pi", 6)
    written = write(model, tokenizer, digits, replace(GREEDY, rules="standard"), prompt="now characteristic")
    assert written.prompt_digits == 3 and written.text.startswith("now characteristic")
    assert written.verification.ok and written.verification == verify(written.text, digits, "standard")
    with pytest.raises(PilishError, match='"characteristic" has 14 letters, more than the basic rules allow'):
        write(model, tokenizer, digits, GREEDY, prompt="now characteristic")


def test_a_topic_may_fill_half_the_context_it_leaves_and_no_more(model_dir):
    model, tokenizer = load_model(model_dir)
    # 32 tokens of context, 8 new per window: the 24 it keeps hold at most 12 pinned, <|endoftext|> and the topic
    windows = writing.Windows(model, tokenizer, GREEDY, [5] * 11, [])
    assert windows.pinned == [tokenizer.eos_token_id] + [5] * 11
    with pytest.raises(PilishError, match="topic is 12 tokens long; keep it under half of the 24 tokens"):
        writing.Windows(model, tokenizer, GREEDY, [5] * 12, [])


def test_the_defaults_end_sentences_where_the_stories_do_often_and_write_no_quotes(model_dir, corpus_file):
    model, tokenizer = load_model(model_dir)
    ngrams = ngram_model(tokenizer, read_stories(corpus_file))
    quote_ids = {i for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
                 if not letters_in(token) and any(char in "\"'" for char in token)}
    ends = set(tokenizer.convert_tokens_to_ids([".", "!", "?"]))
    size, real = ngrams.vocab_size, set(ngrams.trigrams.keys.tolist())
    digits = get_digits("pi", 150)  # several windows of the 32-token model
    options = replace(WriteOptions(), num_beams=4)

    def sentence_ends(written):  # (real, not real) sentence ends, the text's last token left out
        tokens = [tokenizer.eos_token_id] * 2 + written.ids
        found = [(tokens[i - 2] * size + tokens[i - 1]) * size + token in real
                 for i, token in enumerate(tokens[:-1]) if token in ends and i >= 2]
        return found.count(True), found.count(False)

    texts = {bonus: write(model, tokenizer, digits, replace(options, sentence_bonus=bonus), ngrams=ngrams)
             for bonus in (WriteOptions().sentence_bonus, 10.0)}
    for written in texts.values():
        assert written.verification.ok
        assert quote_ids and not quote_ids & set(written.ids) and not set("\"'") & set(written.text.replace("'s", ""))
        assert sentence_ends(written)[1] == 0  # every sentence ends where one ends in the stories
    assert sentence_ends(texts[10.0])[0] >= 1  # the corpus is templates: few of its word pairs end a sentence
    # without the rule, some end where no story does, and the bonus changes nothing
    unruled = {bonus: write(model, tokenizer, digits, replace(options, real_sentence_ends=False, sentence_bonus=bonus),
                            ngrams=ngrams) for bonus in (0.0, 3.0)}
    assert sentence_ends(unruled[0.0])[1] > 0
    assert unruled[3.0].ids == unruled[0.0].ids


def test_the_sentence_bonus_and_the_unseen_pair_cost_are_checked():
    assert WriteOptions(sentence_bonus=0.0, unseen_pair_cost=0.0).sentence_bonus == 0.0
    for bad in (-0.5, writing.MAX_SENTENCE_BONUS + 1):
        with pytest.raises(PilishError, match="sentence bonus must be between 0 and"):
            WriteOptions(sentence_bonus=bad)
        with pytest.raises(PilishError, match="unseen pair cost must be between 0 and"):
            WriteOptions(unseen_pair_cost=bad)
