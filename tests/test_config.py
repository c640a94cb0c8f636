import subprocess
import sys

import pytest

import train_tokenizer
from common import UserError, configure
from conftest import ROOT


def test_constants_block_only_and_types_kept():
    config = configure(vars(train_tokenizer), [])
    assert config.VOCAB_SIZE == 30000 and config.LOWERCASE is True
    assert not hasattr(config, "MOJIBAKE")  # defined after the imports: not a setting


def test_overrides_parse_to_the_constants_type():
    config = configure(vars(train_tokenizer), ["--vocab_size=123", "--lowercase=false", "--held_out=0.5",
                                               "--dataset=x.txt"])
    assert (config.VOCAB_SIZE, config.LOWERCASE, config.HELD_OUT, config.DATASET) == (123, False, 0.5, "x.txt")
    assert configure(vars(train_tokenizer), ["--lowercase"]).LOWERCASE is True  # a bare flag means true
    assert configure(vars(train_tokenizer), ["--vocab-size=77"]).VOCAB_SIZE == 77  # dashes work as underscores


def test_list_overrides():
    import generate
    assert configure(vars(generate), ["--prompts=a, b|c"]).PROMPTS == ["a, b", "c"]
    assert configure(vars(generate), ['--prompts=["x", "y"]']).PROMPTS == ["x", "y"]


@pytest.mark.parametrize("argv, message", [
    (["--bogus=1"], "unknown setting --bogus"),
    (["--vocab_size=abc"], "--vocab_size takes an integer"),
    (["--held_out=x"], "--held_out takes a number"),
    (["--lowercase=maybe"], "--lowercase takes true or false"),
    (["--vocab_size"], "--vocab_size needs a value"),
    (["vocab_size=3"], "unexpected argument"),
])
def test_bad_overrides_are_user_errors(argv, message):
    with pytest.raises(UserError, match=message) as error:
        configure(vars(train_tokenizer), argv)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("arg", ["--bogus=1", "--vocab_size=abc"])
def test_command_line_error_is_one_line_and_non_zero(arg):
    result = subprocess.run([sys.executable, "train_tokenizer.py", arg], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "--dataset" in lines[0] or "integer" in lines[0]  # lists the valid names / says the type


@pytest.mark.parametrize("script", ["train_tokenizer", "train_model", "generate", "pilish_generate"])
def test_help_lists_every_setting_with_its_comment(script):
    import importlib
    module = importlib.import_module(script)
    source = (ROOT / f"{script}.py").read_text(encoding="utf-8")
    result = subprocess.run([sys.executable, f"{script}.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    settings = configure(vars(module), [])
    assert len(vars(settings)) >= 5
    for name, value in vars(settings).items():
        line = next(line for line in source.splitlines() if line.startswith(f"{name} = "))
        comment = line.split("  # ", 1)[1]
        assert f"--{name.lower()}={value!r}\n      {comment}\n" in result.stdout


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
