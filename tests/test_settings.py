"""lmkit.settings: a script's UPPERCASE settings, --name=value overrides, --help, and one-line errors."""

import importlib
import subprocess
import sys

import pytest

import generate
import train_tokenizer
from conftest import ROOT
from lmkit.settings import UserError, configure, first_line


def test_constants_block_only_and_types_kept():
    config = configure(vars(train_tokenizer), [])
    assert config.VOCAB_SIZE == 30000 and config.LOWERCASE is True
    assert hasattr(train_tokenizer, "SPECIAL_TOKENS")
    assert not hasattr(config, "SPECIAL_TOKENS")  # uppercase but imported after the block: not a setting


def test_overrides_parse_to_the_constants_type():
    config = configure(vars(train_tokenizer), ["--vocab_size=123", "--lowercase=false", "--held_out=0.5",
                                               "--dataset=x.txt"])
    assert (config.VOCAB_SIZE, config.LOWERCASE, config.HELD_OUT, config.DATASET) == (123, False, 0.5, "x.txt")
    assert configure(vars(train_tokenizer), ["--lowercase"]).LOWERCASE is True  # a bare flag means true
    assert configure(vars(train_tokenizer), ["--vocab-size=77"]).VOCAB_SIZE == 77  # dashes work as underscores


def test_list_overrides():
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


def test_first_line_reports_a_long_error_in_one_line():
    assert first_line(ValueError("cannot parse\n  line 2\n  line 3")) == "cannot parse"
    assert first_line(KeyError("text")) == "no 'text' in it"  # a KeyError's message is only the key
    assert first_line(OSError()) == "OSError"  # no message: its type
