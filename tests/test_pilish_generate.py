import subprocess
import sys

import pytest

import pilish_generate
from common import UserError, configure, load_model
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


@pytest.mark.parametrize("arg, words", [("--digits=12a", "12a"), ("--rules=fancy", "RULES"),
                                        ("--decoding=greedy", "DECODING"), ("--num_digits=0", "at least 1")])
def test_bad_settings_are_one_line_errors(model_dir, arg, words):
    result = run_script(f"--model_dir={model_dir}", arg)
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and words in result.stderr


def test_prompt_that_breaks_the_digits_says_where(model_dir):
    with pytest.raises(UserError, match='prompt does not follow the digits: word 1 "hello" has 5 letters but digit 1 of the sequence is 3'):
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
        config = configure(vars(pilish_generate), [f"--decoding={decoding}"])
        generated = pilish_generate.write_pilish(model, tokenizer, digits, config)
        assert len(generated) > 4 * 32  # several contexts long
        text = " ".join(tokenizer.convert_ids_to_tokens(generated))
        assert verify(text, digits, "basic").ok
