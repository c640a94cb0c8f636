import re
import subprocess
import sys

import pytest

import pilish_generate
import pilish
from common import UserError, load_model
from conftest import ROOT, run_main
from pilish import WORD_RE, get_digits, letters_in, verify

PI_SENTENCE = "How I need a drink, alcoholic in nature, after the heavy lectures involving quantum mechanics!"


def run_script(*argv):
    return subprocess.run([sys.executable, "pilish_generate.py", *argv], cwd=ROOT, capture_output=True, text=True)


def test_check_file_verifies_without_a_model(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text(PI_SENTENCE + "\n")
    result = run_script(f"--check_file={good}", "--model_dir=/nonexistent")
    assert result.returncode == 0 and result.stdout.strip() == "✓ 15/15 digits of pi"
    bad = tmp_path / "bad.txt"
    bad.write_text(PI_SENTENCE + "\n" + PI_SENTENCE.replace("drink", "drinks") + "\n")
    result = run_script(f"--check_file={bad}")
    lines = result.stdout.strip().splitlines()
    assert result.returncode != 0 and lines[0] == "✓ 15/15 digits of pi"
    assert lines[1].startswith("✗ 4/15 digits of pi") and '"drinks"' in lines[1]


@pytest.mark.parametrize("arg, words", [("--digits=12a", "12a"), ("--rules=fancy", "basic, standard"),
                                        ("--decoding=greedy", "beam, sample"), ("--num_digits=0", "at least 1")])
def test_bad_settings_are_one_line_errors(model_dir, arg, words):
    result = run_script(f"--model_dir={model_dir}", arg)
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and words in result.stderr


def test_prompt_that_breaks_the_digits_says_where(model_dir):
    with pytest.raises(pilish.PilishError, match='prompt does not follow the digits: word 1 "hello" has 5 letters but digit 1 of the sequence is 3'):
        run_main(pilish_generate, [f"--model_dir={model_dir}", "--prompt=hello world"])
    result = run_script(f"--model_dir={model_dir}", "--prompt=hello world")
    assert result.returncode != 0 and result.stderr.count("\n") == 1


@pytest.mark.parametrize("decoding", ["sample", "beam"])
def test_texts_are_exact_and_written_to_the_output_file(model_dir, tmp_path, capsys, decoding):
    output = tmp_path / "pilish.txt"
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--num_digits=40", f"--decoding={decoding}",
                               "--num_samples=2", f"--output_file={output}"])
    captured = capsys.readouterr()
    assert captured.out.count("✓ 40/40 digits of pi") == 2
    assert "NLL per word under the model alone" in captured.err
    texts = output.read_text().splitlines()
    assert len(texts) == 2
    if decoding == "sample":
        assert texts[0] != texts[1]  # each sample has its own seed
    for text in texts:
        assert verify(text, get_digits("pi", 40), "basic").ok
        assert text.endswith((".", "!", "?", '."', '!"', '?"'))


def test_without_punctuation_only_words(model_dir, tmp_path):
    output = tmp_path / "words.txt"
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--num_digits=30", "--allow_punctuation=false",
                               "--decoding=sample", f"--output_file={output}"])
    text = output.read_text().strip()
    assert verify(text, get_digits("pi", 30), "basic").ok
    assert all(WORD_RE.fullmatch(word) for word in text[:-1].split())  # words only, then a full stop


def test_prompt_is_continued(model_dir, capsys):
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--prompt=Tom, a ball", "--num_digits=20"])
    out = capsys.readouterr().out
    assert out.startswith("tom, a ball") and "✓ 20/20 digits of pi" in out


def test_standard_rules_and_other_constants(model_dir, capsys):
    # the digits 1 2 ... may be spelled by a 12-letter word ("neighborhood") under the standard rules
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--digits=1213121413", "--rules=standard",
                               "--decoding=sample", "--num_samples=3"])
    out = capsys.readouterr().out
    assert out.count("✓ 10/10 digits of the digits") == 3
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--digits=e", "--num_digits=25", "--show_digits"])
    out = capsys.readouterr().out
    assert "✓ 25/25 digits of e" in out
    words, counts = out.splitlines()[0].split(), out.splitlines()[1].split()
    assert [int(c) % 10 for c in counts[:3]] == [letters_in(w) % 10 for w in words[:3]] == [2, 7, 1]


def test_sliding_window_keeps_a_long_text_exact(model_dir):
    model, tokenizer = load_model(model_dir)
    assert model.config.n_positions == 32
    digits = get_digits("pi", 150)
    for decoding in ("sample", "beam"):
        written = pilish.write(model, tokenizer, digits, **pilish.decoding_settings(decoding))
        assert len(written.ids) > 4 * 32  # several contexts long
        assert written.verification.ok and written.prompt_digits == 0
        text = " ".join(tokenizer.convert_ids_to_tokens(written.ids))
        assert verify(text, digits, "basic").ok


def test_write_continues_a_prompt_and_returns_text_ids_and_positions(model_dir):
    model, tokenizer = load_model(model_dir)
    digits = get_digits("pi", 12)
    written = pilish.write(model, tokenizer, digits, prompt="Tom, a ball", **pilish.decoding_settings("beam", 2))
    assert written.prompt_digits == 3 and written.prompt_ids == tokenizer.convert_tokens_to_ids(["▁tom", ",", "▁a", "▁ball"])
    assert written.text.startswith("tom, a ball") and written.verification.ok
    assert written.verification == verify(written.text, digits, "basic")
    generated_words = [w for w in tokenizer.convert_ids_to_tokens(written.ids) if letters_in(w)]
    assert [letters_in(w) % 10 for w in generated_words] == [int(d) for d in digits[3:]]  # prompt not included


@pytest.mark.parametrize("options, message", [
    ({"prompt": "hello world"}, "prompt does not follow the digits"),
    ({"window": 3}, "too short"),
    ({"rules": "fancy"}, "unknown Pilish rules"),
])
def test_write_raises_pilish_errors_that_are_value_errors(model_dir, options, message):
    model, tokenizer = load_model(model_dir)
    with pytest.raises(pilish.PilishError, match=message) as raised:
        pilish.write(model, tokenizer, "31415", **options)
    assert isinstance(raised.value, ValueError)


def test_write_fails_fast_when_the_processor_makes_no_progress(model_dir, monkeypatch):
    import pilish_engine
    model, tokenizer = load_model(model_dir)
    # a broken processor that never counts a digit: write must stop at once, not loop for ever
    monkeypatch.setattr(pilish_engine.PilishLogitsProcessor, "positions",
                        lambda self, input_ids: self._starts(input_ids.shape[0]))
    with pytest.raises(RuntimeError, match="no progress at digit 0"):
        pilish.write(model, tokenizer, get_digits("pi", 50), do_sample=False)


def test_decoding_settings_reach_generate():
    assert pilish.decoding_settings("beam", 4, no_repeat_ngram_size=0, repetition_penalty=1.0) == dict(
        do_sample=False, num_beams=4, early_stopping=True, no_repeat_ngram_size=None, repetition_penalty=None)
    assert pilish.decoding_settings("sample", temperature=0.5, top_k=0, top_p=0.9, no_repeat_ngram_size=2,
                                    repetition_penalty=1.3) == dict(
        do_sample=True, temperature=0.5, top_k=None, top_p=0.9, no_repeat_ngram_size=2, repetition_penalty=1.3)
    with pytest.raises(pilish.PilishError, match="decoding must be one of beam, sample"):
        pilish.decoding_settings("greedy")


def test_topic_is_read_first_but_spells_no_digits_and_is_not_printed(model_dir):
    model, tokenizer = load_model(model_dir)
    digits = get_digits("pi", 30)
    settings = pilish.decoding_settings("beam", 2)
    plain = pilish.write(model, tokenizer, digits, **settings)
    topic = "The dog ran to the kitchen."
    about_a_dog = pilish.write(model, tokenizer, digits, topic=topic, **settings)
    assert about_a_dog.verification.ok and about_a_dog.topic_ids == tokenizer.convert_tokens_to_ids(
        ["▁the", "▁dog", "▁ran", "▁to", "▁the", "▁kitchen", "."])
    assert about_a_dog.ids != plain.ids  # the topic changes what is written
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
    written = pilish.write(model, tokenizer, digits, topic="The dog ran.", **pilish.decoding_settings("sample"))
    assert written.verification.ok and len(windows) > 3
    assert all(window[:5] == [tokenizer.eos_token_id, *topic_ids] for window in windows)
    with pytest.raises(pilish.PilishError, match="topic is 20 tokens long"):
        pilish.write(model, tokenizer, digits, topic="the dog ran. " * 5)


def test_topic_setting_prints_only_the_pilish(model_dir, capsys):
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--topic=Tom saw a big red dog.", "--num_digits=20"])
    out = capsys.readouterr().out
    assert "✓ 20/20 digits of pi" in out and "tom saw a big red dog" not in out


def repeats(words, n):
    """Word n-grams of `words` that already occurred earlier in it (n=1: the same word twice in a row)."""
    if n == 1:
        return sum(a == b for a, b in zip(words, words[1:]))
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) - len(set(grams))


def test_ngram_table_counts_word_ngrams_across_marks_and_the_marks_after_two_tokens(tokenizer_dir):
    from common import load_tokenizer
    tokenizer = load_tokenizer(tokenizer_dir)
    size = len(tokenizer)
    table = pilish.ngram_table(tokenizer, ['Mom said, "Let\'s play!"', "I am so happy."])

    def ids(*tokens):
        found = tokenizer.convert_tokens_to_ids(list(tokens))
        assert tokenizer.unk_token_id not in found
        return found

    def keys(*grams):
        out = []
        for gram in grams:
            key = 0
            for token_id in ids(*gram):
                key = key * size + token_id
            out.append(key)
        return sorted(out)

    assert table["bigrams"].tolist() == keys(("▁mom", "▁said"), ("▁said", "▁let's"), ("▁let's", "▁play"),
                                             ("▁i", "▁am"), ("▁am", "▁so"), ("▁so", "▁happy"))
    assert table["trigrams"].tolist() == keys(("▁mom", "▁said", "▁let's"), ("▁said", "▁let's", "▁play"),
                                              ("▁i", "▁am", "▁so"), ("▁am", "▁so", "▁happy"))
    # the marks that follow two tokens: `mom said ,`, `said , "`, `let's play !`, `play ! "`, `so happy .`
    assert table["marks"].tolist() == keys(("▁mom", "▁said", ","), ("▁said", ",", '▁"'), ("▁let's", "▁play", "!"),
                                           ("▁play", "!", '"'), ("▁so", "▁happy", "."))
    assert pilish.ngram_table(tokenizer, ["Mom said, mom said."], min_count=2)["marks"].tolist() == []


def test_whole_text_rules_and_the_prior_keep_a_long_text_exact(model_dir, corpus_file, tmp_path):
    import fluency
    model, tokenizer = load_model(model_dir)
    table = pilish.ngram_table(tokenizer, fluency.read_stories(corpus_file))
    pilish.save_ngrams(tmp_path, table)
    loaded = pilish.load_ngrams(tmp_path)
    assert all(torch_equal(loaded[name], table[name]) for name in ("bigrams", "trigrams"))
    assert pilish.load_ngrams(tmp_path / "nothing") is None
    digits = get_digits("pi", 150)  # several windows of the 32-token model
    found = {}
    for rules in (dict(), dict(no_repeat_words=3, no_immediate_repeat=True, ngrams=table, bigram_bonus=2.0,
                               trigram_bonus=2.0)):
        written = pilish.write(model, tokenizer, digits, **rules, **pilish.decoding_settings("beam", 4))
        assert written.verification.ok
        words = [w for w in tokenizer.convert_ids_to_tokens(written.ids) if letters_in(w)]
        found[bool(rules)] = (repeats(words, 1), repeats(words, 3))
    # the corpus has one 1-letter word ("a"), so pi's "1 1" forces a repeat: rules yield to exactness
    assert found[True][0] <= found[False][0] and found[True][1] < found[False][1]


def test_beams_share_one_read_of_each_window_and_write_the_same_text(model_dir, monkeypatch):
    import pilish_engine
    model, tokenizer = load_model(model_dir)
    digits = get_digits("pi", 120)  # several windows of the 32-token model
    caches, real_generate = [], model.generate

    def recording_generate(window_ids, **kwargs):
        cache = kwargs.get(pilish_engine._cache_argument())
        if cache is None:  # only the first window, <|endoftext|> alone, has nothing to share
            assert window_ids.tolist() == [[tokenizer.eos_token_id]]
        else:
            caches.append((window_ids.shape[1], cache.get_seq_length(), cache.layers[0].keys.shape[0]))
        return real_generate(window_ids, **kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    shared = pilish.write(model, tokenizer, digits, **pilish.decoding_settings("beam", 3))
    # every window came with a cache of all its tokens but the last, one copy per beam
    assert len(caches) > 2 and all(cached == length - 1 and rows == 3 for length, cached, rows in caches)
    monkeypatch.setattr(model, "generate", real_generate)
    monkeypatch.setattr(pilish_engine, "shared_prefill", lambda model, window_ids, copies: {})
    alone = pilish.write(model, tokenizer, digits, **pilish.decoding_settings("beam", 3))
    assert shared.ids == alone.ids and shared.verification.ok


def test_balanced_quotes_pair_up_through_a_long_text(model_dir, corpus_file):
    import fluency
    model, tokenizer = load_model(model_dir)
    table = pilish.ngram_table(tokenizer, fluency.read_stories(corpus_file))
    opening, closing = tokenizer.convert_tokens_to_ids(['▁"', '"'])
    digits = get_digits("pi", 150)  # several windows of the 32-token model
    for decoding in ("beam", "sample"):
        written = pilish.write(model, tokenizer, digits, ngrams=table, mark_bonus=4.0, balance_quotes=True,
                               **pilish.decoding_settings(decoding, 4))
        assert written.verification.ok
        depth, depths = 0, []
        for token in written.ids:
            depth += (token == opening) - (token == closing)
            depths.append(depth)
        assert written.ids.count(opening) > 0  # the corpus is full of dialogue, and the prior favours it
        assert set(depths) <= {0, 1}  # never a second opening quote, never a closing one with none open


def torch_equal(a, b):
    import torch
    return torch.equal(a, b)


def spy(monkeypatch, model_dir):
    """The keyword arguments of each pilish.write and model.generate call of pilish_generate.main."""
    model, tokenizer = load_model(model_dir)
    writes, generates = [], []
    real_write, real_generate = pilish.write, model.generate

    def recording_write(*args, **kwargs):
        writes.append(kwargs)
        return real_write(*args, **kwargs)

    def recording_generate(*args, **kwargs):
        generates.append(kwargs)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    monkeypatch.setattr(pilish_generate, "load_model", lambda folder, device=None: (model, tokenizer))
    monkeypatch.setattr(pilish, "write", recording_write)
    return writes, generates


def test_beam_settings_reach_write_and_generate(model_dir, monkeypatch, capsys):
    writes, generates = spy(monkeypatch, model_dir)
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--num_digits=12", "--num_beams=3",
                               "--no_repeat_ngram_size=4", "--repetition_penalty=1.4", "--rules=standard",
                               "--punctuation_lookahead=false", "--context_length=20", "--prompt=Tom, a",
                               "--topic=A dog.", "--no_repeat_words=4", "--no_immediate_repeat=false",
                               "--bigram_bonus=1.5", "--trigram_bonus=0.5", "--mark_bonus=0.7",
                               "--balance_quotes=false"])
    assert "✓ 12/12 digits of pi" in capsys.readouterr().out
    (write,) = writes
    assert (write["rules"], write["prompt"], write["window"], write["topic"]) == ("standard", "Tom, a", 20, "A dog.")
    assert (write["no_repeat_words"], write["no_immediate_repeat"], write["bigram_bonus"],
            write["trigram_bonus"], write["mark_bonus"], write["balance_quotes"]) == (4, False, 1.5, 0.5, 0.7, False)
    assert set(write["ngrams"]) == {"bigrams", "trigrams", "marks"}  # train_model.py saved them
    fluency = generates[0]["logits_processor"][0]
    assert (fluency.bigram_bonus, fluency.trigram_bonus, fluency.mark_bonus) == (1.5, 0.5, 0.7)
    assert fluency.marks is not None and len(fluency.marks) > 0 and not fluency.opening and not fluency.closing
    assert write["allow_punctuation"] is True and write["punctuation_lookahead"] is False
    for call in generates:
        assert (call["num_beams"], call["do_sample"], call["no_repeat_ngram_size"], call["repetition_penalty"]) == (
            3, False, 4, 1.4)
        processor = call["logits_processor"][-1]  # the Pilish mask comes last (after the fluency rules)
        assert processor.rules == "standard" and processor.punctuation_lookahead is False
        assert call["attention_mask"].shape[1] <= 20 - 20 // 4  # the window: 3/4 of CONTEXT_LENGTH
    assert len(generates) >= 1


def test_a_model_without_ngrams_or_with_an_old_one_writes_without_that_prior(model_dir, tmp_path, capsys):
    import shutil
    import torch
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    table = torch.load(folder / pilish.NGRAMS_FILE)
    torch.save({"bigrams": table["bigrams"], "trigrams": table["trigrams"]}, folder / pilish.NGRAMS_FILE)
    run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=12", "--num_beams=2"])
    captured = capsys.readouterr()
    assert "✓ 12/12 digits of pi" in captured.out
    assert "predates MARK_BONUS" in captured.err and "run the same train_model.py command again" in captured.err
    (folder / pilish.NGRAMS_FILE).unlink()
    run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=12", "--num_beams=2"])
    captured = capsys.readouterr()
    assert "✓ 12/12 digits of pi" in captured.out and "so no n-gram prior" in captured.err
    run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=12", "--num_beams=2", "--bigram_bonus=0",
                               "--trigram_bonus=0", "--mark_bonus=0"])
    assert "prior" not in capsys.readouterr().err  # no prior asked for: no note


def test_sampling_settings_reach_generate(model_dir, monkeypatch, capsys):
    writes, generates = spy(monkeypatch, model_dir)
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--num_digits=8", "--decoding=sample",
                               "--temperature=0.6", "--top_k=5", "--top_p=0.8", "--no_repeat_ngram_size=0",
                               "--repetition_penalty=1.0", "--allow_punctuation=false", "--num_samples=2"])
    assert capsys.readouterr().out.count("✓ 8/8 digits of pi") == 2
    assert len(writes) == 2 and all(write["allow_punctuation"] is False for write in writes)
    for call in generates:
        assert (call["do_sample"], call["temperature"], call["top_k"], call["top_p"]) == (True, 0.6, 5, 0.8)
        assert call["no_repeat_ngram_size"] is None and call["repetition_penalty"] is None
        assert "num_beams" not in call and call["logits_processor"][-1].allow_punctuation is False
        # the default BALANCE_QUOTES: the fluency rules know the opening and the closing double quote
        fluency = call["logits_processor"][0]
        tokenizer = load_model(model_dir)[1]
        assert (fluency.opening, fluency.closing) == ({tokenizer.convert_tokens_to_ids('▁"')},
                                                      {tokenizer.convert_tokens_to_ids('"')})


def test_check_file_uses_the_rules_and_digits_asked_for(tmp_path, capsys):
    text = tmp_path / "long.txt"
    text.write_text("A neighborhood, a tree.\n")  # 1, 12, 1, 4: the digits 11214 under the standard rules
    run_main(pilish_generate, [f"--check_file={text}", "--digits=11214", "--rules=standard"])
    assert capsys.readouterr().out.strip() == "✓ 5/5 digits of the digits"
    with pytest.raises(SystemExit) as exit_status:
        run_main(pilish_generate, [f"--check_file={text}", "--digits=11214"])
    assert exit_status.value.code == 1
    out = capsys.readouterr().out
    assert out.startswith("✗ 1/") and '"neighborhood" has 12 letters, more than the basic rules allow' in out
    text.write_text("Now I know a tree.\n")  # 3, 1, 4, 1, 4: e is 2.718...
    with pytest.raises(SystemExit):
        run_main(pilish_generate, [f"--check_file={text}", "--digits=e"])
    assert capsys.readouterr().out.startswith("✗ 0/5 digits of e: word 1")


def test_finish_sentence_ends_the_text_and_closes_its_quote():
    assert pilish.finish_sentence("tom ran") == "tom ran."
    assert pilish.finish_sentence("tom ran!") == "tom ran!"
    assert pilish.finish_sentence('he said, "go') == 'he said, "go."'
    assert pilish.finish_sentence('he said, "go!"') == 'he said, "go!"'
    assert pilish.finish_sentence('"hi," he said') == '"hi," he said.'


def test_show_digits_wraps_and_aligns():
    text = "how i need a drink, alcoholic in nature, after the heavy lectures"
    lines = pilish_generate.show_digits(text, width=30).split("\n")
    assert all(len(line) <= 30 for line in lines)
    tops, bottoms = lines[0::3], lines[1::3]
    assert len(tops) >= 3 and all(line == "" for line in lines[2::3])
    words = [word for top in tops for word in top.split()]
    counts = [count for bottom in bottoms for count in bottom.split()]
    assert words == text.split() and counts == ["3", "1", "4", "1", "5", "9", "2", "6", "5", "3", "5", "8"]
    for top, bottom in zip(tops, bottoms):  # each count starts under its word
        assert [m.start() for m in re.finditer(r"\S+", top)] == [m.start() for m in re.finditer(r"\S+", bottom)]


@pytest.mark.parametrize("content, argv, message", [
    ("", [], "has no text to check"),
    ("\n  \n", [], "has no text to check"),
    (None, [], "cannot read"),
    (None, ["--num_samples=0", "--check_file="], "NUM_SAMPLES must be at least 1"),
])
def test_check_file_and_sample_count_errors(tmp_path, content, argv, message):
    path = tmp_path / "texts.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        run_main(pilish_generate, [f"--check_file={path}", f"--model_dir={tmp_path}", *argv])


def test_write_reports_progress_and_clamps_the_window(model_dir):
    model, tokenizer = load_model(model_dir)
    assert [pilish.context_window(model, w) for w in (0, 20, 1000)] == [32, 20, 32]

    class Progress:
        total = 0

        def update(self, n):
            assert n >= 0
            self.total += n

    progress = Progress()
    digits = get_digits("pi", 40)
    written = pilish.write(model, tokenizer, digits, prompt="Tom, a ball", progress=progress,
                           **pilish.decoding_settings("sample"))
    assert written.verification.ok and progress.total == 40
    with pytest.raises(pilish.PilishError, match="at least 1"):
        pilish.decoding_settings("beam", 0)
