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
