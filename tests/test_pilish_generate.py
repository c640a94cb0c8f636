"""pilish_generate.py: its settings, what it prints and writes, --check_file and --show_digits, and its
errors. What `write` itself does is in test_pilish_writing.py."""

import inspect
import re
import shutil
import subprocess
import sys

import pytest
import torch

import pilish_generate
from conftest import ROOT, run_main
from lmkit.folders import load_model
from lmkit.settings import UserError
from pilish import writing
from pilish.ngram import NGRAMS_FILE, NgramModel
from pilish.prior import WritingPrior
from pilish.rules import PilishError, get_digits, verify
from pilish.tokens import WORD_RE, letters_in

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
    with pytest.raises(PilishError, match='prompt does not follow the digits: word 1 "hello" has 5 letters but digit 1 of the sequence is 3'):
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


def test_topic_setting_prints_only_the_pilish(model_dir, capsys):
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--topic=Tom saw a big red dog.", "--num_digits=20"])
    out = capsys.readouterr().out
    assert "✓ 20/20 digits of pi" in out and "tom saw a big red dog" not in out


def spy(monkeypatch, model_dir):
    """The arguments of each `write` call of pilish_generate.main, by name ({"options": WriteOptions(...),
    "prompt": ...}), and the keyword arguments of each model.generate call."""
    model, tokenizer = load_model(model_dir)
    writes, generates = [], []
    real_write, real_generate = writing.write, model.generate

    def recording_write(*args, **kwargs):
        writes.append(inspect.signature(real_write).bind(*args, **kwargs).arguments)
        return real_write(*args, **kwargs)

    def recording_generate(*args, **kwargs):
        generates.append(kwargs)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    monkeypatch.setattr(pilish_generate, "load_model", lambda folder, device=None: (model, tokenizer))
    monkeypatch.setattr(writing, "write", recording_write)
    return writes, generates


def test_beam_settings_reach_write_and_generate(model_dir, monkeypatch, capsys):
    writes, generates = spy(monkeypatch, model_dir)
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--num_digits=12", "--num_beams=3",
                               "--no_repeat_ngram_size=4", "--repetition_penalty=1.4", "--rules=standard",
                               "--punctuation_lookahead=false", "--context_length=20", "--prompt=Tom, a",
                               "--topic=A dog.", "--no_repeat_words=4", "--no_immediate_repeat=false",
                               "--ngram_weight=0.4", "--balance_quotes=false"])
    assert "✓ 12/12 digits of pi" in capsys.readouterr().out
    (write,) = writes
    options = write["options"]
    assert (options.rules, write["prompt"], options.context_length, write["topic"]) == ("standard", "Tom, a", 20,
                                                                                        "A dog.")
    assert (options.no_repeat_words, options.no_immediate_repeat, options.ngram_weight,
            options.balance_quotes) == (4, False, 0.4, False)
    assert isinstance(write["ngrams"], NgramModel)  # train_model.py saved it
    prior = generates[0]["logits_processor"][0]
    assert isinstance(prior, WritingPrior)
    assert prior.ngram_model is write["ngrams"] and prior.ngram_weight == 0.4
    assert not prior.opening and not prior.closing
    assert options.allow_punctuation is True and options.punctuation_lookahead is False
    for call in generates:
        assert (call["num_beams"], call["do_sample"], call["no_repeat_ngram_size"], call["repetition_penalty"]) == (
            3, False, 4, 1.4)
        processor = call["logits_processor"][-1]  # the Pilish mask comes last (after the prior)
        assert processor.plan.rules == "standard" and processor.punctuation_lookahead is False
        assert call["attention_mask"].shape[1] <= 20 - 20 // 4  # the window: 3/4 of CONTEXT_LENGTH
    assert len(generates) >= 1


def test_a_model_without_ngrams_or_with_an_old_one_writes_without_the_ngram_mix(model_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    # the flat n-gram tables that ngrams.pt held before the Kneser-Ney model
    torch.save({"bigrams": torch.tensor([7]), "trigrams": torch.tensor([7]), "marks": torch.tensor([7])},
               folder / NGRAMS_FILE)
    run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=12", "--num_beams=2"])
    captured = capsys.readouterr()
    assert "✓ 12/12 digits of pi" in captured.out
    (note,) = [line for line in captured.err.splitlines() if line.startswith("note:")]  # one line
    assert note.startswith("note: no n-gram mix") and "run the same train_model.py command again" in note
    (folder / NGRAMS_FILE).unlink()
    run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=12", "--num_beams=2"])
    captured = capsys.readouterr()
    assert "✓ 12/12 digits of pi" in captured.out and "so no n-gram mix" in captured.err
    run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=12", "--num_beams=2", "--ngram_weight=0"])
    assert "n-gram" not in capsys.readouterr().err  # no mix asked for: no note


def test_sampling_settings_reach_generate(model_dir, monkeypatch, capsys):
    writes, generates = spy(monkeypatch, model_dir)
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--num_digits=8", "--decoding=sample",
                               "--temperature=0.6", "--top_k=5", "--top_p=0.8", "--allow_punctuation=false",
                               "--num_samples=2"])
    assert capsys.readouterr().out.count("✓ 8/8 digits of pi") == 2
    assert len(writes) == 2 and all(write["options"].allow_punctuation is False for write in writes)
    for call in generates:
        assert (call["do_sample"], call["temperature"], call["top_k"], call["top_p"]) == (True, 0.6, 5, 0.8)
        # generate's window rules are off by default (the whole-text rules of the prior do their work)
        assert call["no_repeat_ngram_size"] is None and call["repetition_penalty"] is None
        assert "num_beams" not in call and call["logits_processor"][-1].allow_punctuation is False
        # the default BALANCE_QUOTES: the prior knows the opening and the closing double quote
        prior = call["logits_processor"][0]
        tokenizer = load_model(model_dir)[1]
        assert (prior.opening, prior.closing) == ({tokenizer.convert_tokens_to_ids('▁"')},
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
    (None, ["--num_samples=0", "--check_file="], "NUM_SAMPLES must lie in \\[1, 1000\\]"),
])
def test_check_file_and_sample_count_errors(tmp_path, content, argv, message):
    path = tmp_path / "texts.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        run_main(pilish_generate, [f"--check_file={path}", f"--model_dir={tmp_path}", *argv])



def test_help_and_check_file_need_neither_torch_nor_transformers(tmp_path):
    text = tmp_path / "pilish.txt"
    text.write_text("How I need a drink, alcoholic in nature!\n")
    blocked = ("import runpy, sys\n"
               "sys.modules['torch'] = sys.modules['transformers'] = None  # importing either now fails\n"
               "sys.argv = ['pilish_generate.py', *sys.argv[1:]]\n"
               "runpy.run_path('pilish_generate.py', run_name='__main__')\n")
    for argv, expected in [(["--help"], "--check_file"), ([f"--check_file={text}"], "✓ 8/8 digits of pi")]:
        result = subprocess.run([sys.executable, "-c", blocked, *argv], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


def test_the_progress_bar_counts_digits_and_stays_hidden_for_a_short_text(model_dir, monkeypatch, capsys):
    import tqdm
    bars = []

    class Bar:
        def __init__(self, **kwargs):
            bars.append(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            pass

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    run_main(pilish_generate, [f"--model_dir={model_dir}", "--num_digits=5", "--num_beams=2"])
    assert len(bars) == 1 and bars[0]["unit"] == "digit" and bars[0]["total"] == 5 and bars[0]["disable"]
    assert bars[0]["file"] is sys.stderr and "✓ 5/5" in capsys.readouterr().out
