"""lmkit.settings: a script's UPPERCASE settings, --name=value overrides, --help, and one-line errors."""

import importlib
import os
import re
import subprocess
import sys

import pytest

import generate
import train_tokenizer
from conftest import ROOT
from lmkit.settings import UserError, configure, first_line, run_script


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


# ---- pinned by mutation testing (issue 23): parsing, ranges and the entry point, on a script of our own

SCRIPT = '''"""Doc line of the script."""

COUNT = 3  # how many
RATE = 0.5  # a share
NAME = "x"  # a name
FLAG = False  # a switch
ITEMS = ["a"]  # some items
PAIR = ("p", "q")  # a tuple
UNDOCUMENTED = 7

import os

LATE = 1  # after the first import: not a setting
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT, encoding="utf-8")
    namespace = {"__file__": str(path), "__doc__": "Doc line of the script."}
    exec(compile(SCRIPT, str(path), "exec"), namespace)
    return namespace


def test_the_settings_block_ends_at_the_first_import(script):
    assert set(vars(configure(script, []))) == {"COUNT", "RATE", "NAME", "FLAG", "ITEMS", "PAIR", "UNDOCUMENTED"}


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_numbers_must_be_finite(script, text):
    for name in ("rate", "count"):
        with pytest.raises(UserError, match=f"--{name} takes a"):
            configure(script, [f"--{name}={text}"])


@pytest.mark.parametrize("text, value", [("1", True), ("TRUE", True), ("Yes", True), ("on", True),
                                         ("0", False), ("False", False), ("NO", False), ("off", False)])
def test_booleans_take_the_usual_words_in_any_case(script, text, value):
    assert configure(script, [f"--flag={text}"]).FLAG is value


def test_values_keep_the_type_of_their_default(script):
    config = configure(script, ["--count=12", "--rate=2", "--name=12", "--pair=a|b", "--items=[1, 2]"])
    assert (config.COUNT, config.RATE, config.NAME) == (12, 2.0, "12")
    assert type(config.COUNT) is int and type(config.RATE) is float
    assert config.PAIR == ("a", "b") and config.ITEMS == ["1", "2"]
    assert configure(script, ["--items= a | |b "]).ITEMS == ["a", "b"]  # blanks dropped, items stripped
    assert configure(script, ["--name="]).NAME == ""
    with pytest.raises(UserError, match="--count takes an integer, not '1.5'"):
        configure(script, ["--count=1.5"])
    with pytest.raises(UserError, match="--rate takes a number"):
        configure(script, ["--rate=half"])
    with pytest.raises(UserError, match="--items: not a JSON list"):
        configure(script, ["--items=[1, "])
    with pytest.raises(UserError, match="--flag takes true or false, not 'maybe'"):
        configure(script, ["--flag=maybe"])
    with pytest.raises(UserError, match="--late"):  # set after the import: unknown
        configure(script, ["--late=2"])


def test_unknown_setting_lists_the_valid_names(script):
    with pytest.raises(UserError) as error:
        configure(script, ["--bogus=1"])
    assert "--count, --rate, --name, --flag, --items, --pair, --undocumented" in str(error.value)


def test_help_prints_the_docstring_and_each_setting_with_its_comment(script, capsys):
    run_script(lambda config: pytest.fail("main ran"), script, ["--count=5", "-h"])
    out = capsys.readouterr().out
    assert out.startswith("Doc line of the script.\n\nSettings")
    assert "  --count=3\n      how many\n" in out and "  --pair=('p', 'q')\n      a tuple\n" in out
    assert "  --undocumented=7\n  --" in out or out.rstrip().endswith("--undocumented=7")


def test_run_script_reports_errors_in_one_line_with_their_exit_status(script, capsys):
    seen = []
    run_script(lambda config: seen.append(config.COUNT), script, ["--count=4"])
    assert seen == [4]

    def fails(config):
        raise UserError("bad thing")
    with pytest.raises(SystemExit) as exit_:
        run_script(fails, script, [])
    assert exit_.value.code == 1 and capsys.readouterr().err == "error: bad thing\n"

    def library_error(config):
        raise LookupError("its own message")
    with pytest.raises(SystemExit) as exit_:
        run_script(library_error, script, [], errors=(LookupError,))
    assert exit_.value.code == 1 and capsys.readouterr().err == "error: its own message\n"
    with pytest.raises(LookupError):  # not one of `errors`: a real bug, with its traceback
        run_script(library_error, script, [])

    def interrupted(config):
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as exit_:
        run_script(interrupted, script, [])
    assert exit_.value.code == 130 and capsys.readouterr().err == "\ninterrupted\n"
    with pytest.raises(SystemExit) as exit_:
        run_script(fails, script, ["--count=x"])  # a bad override is reported the same way
    assert exit_.value.code == 1 and "--count takes an integer" in capsys.readouterr().err


def test_within_and_at_least_check_each_bound():
    from types import SimpleNamespace

    from lmkit.settings import at_least, within
    config = SimpleNamespace(A=0, B=1, C=5)
    at_least(config, 0, "A", "B")
    with pytest.raises(UserError, match="^B must be at least 2, not 1$"):
        at_least(config, 2, "C", "B", "A")
    within(config, "B", 1, 5)
    within(config, "C", 1, 5)
    for low_open, high_open, name, interval in [(True, False, "B", "(1, 5]"), (False, True, "C", "[1, 5)")]:
        with pytest.raises(UserError, match=f"^{name} must lie in {re.escape(interval)}, not"):
            within(config, name, 1, 5, low_open=low_open, high_open=high_open)
    within(config, "B", 0, 5, low_open=True)
    within(config, "C", 1, 6, high_open=True)
    for name, low, high in [("A", 1, 5), ("C", 1, 4)]:
        with pytest.raises(UserError, match=re.escape(f"{name} must lie in [{low}, {high}]")):
            within(config, name, low, high)


def test_check_writable_creates_a_folder_and_refuses_the_wrong_kind(tmp_path):
    from lmkit.settings import check_writable
    check_writable(tmp_path / "new" / "deeper", "MODEL_DIR")
    assert (tmp_path / "new" / "deeper").is_dir() and not list((tmp_path / "new" / "deeper").iterdir())
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="MODEL_DIR=.*file.txt is a file, not a folder"):
        check_writable(tmp_path / "file.txt", "MODEL_DIR")
    check_writable(tmp_path / "file.txt", "OUTPUT_FILE", folder=False)  # an existing file may be replaced
    check_writable(tmp_path / "out.txt", "OUTPUT_FILE", folder=False)
    assert not (tmp_path / "out.txt").exists()  # checked, not created
    with pytest.raises(UserError, match="OUTPUT_FILE=.*new is a folder, not a file"):
        check_writable(tmp_path / "new", "OUTPUT_FILE", folder=False)
    with pytest.raises(UserError, match="OUTPUT_FILE=.*: folder .*missing does not exist"):
        check_writable(tmp_path / "missing" / "out.txt", "OUTPUT_FILE", folder=False)


def test_next_command_quotes_and_keeps_the_order():
    from lmkit.settings import next_command
    assert next_command("g.py") == "python g.py"
    assert next_command("g.py", B=(2, 1), A=("x y", "z"), C=(3, 3)) == "python g.py --b=2 '--a=x y'"


# ---- each script's ranges at their edges (mutation testing, issue 23): an open end refused, a closed one taken

import generate as generate_script  # noqa: E402
import pilish_generate  # noqa: E402
import train_model  # noqa: E402
from conftest import run_main  # noqa: E402


@pytest.mark.parametrize("module, argv, message", [
    (generate_script, ["--top_p=0"], "TOP_P must lie in \\(0, 1\\]"),
    (pilish_generate, ["--top_p=0"], "TOP_P must lie in \\(0, 1\\]"),
    (train_model, ["--gradient_accumulation=0"], "GRADIENT_ACCUMULATION must be at least 1"),
    (train_model, ["--save_total_limit=0"], "SAVE_TOTAL_LIMIT must be at least 1"),
    (train_model, ["--n_layer=0"], "N_LAYER must be at least 1"),
    (train_tokenizer, ["--held_out=-0.1"], "HELD_OUT must lie in \\[0, 1\\)"),
    (pilish_generate, ["--context_length=-1"], "CONTEXT_LENGTH must be at least 0"),
    (pilish_generate, ["--no_repeat_ngram_size=-1"], "NO_REPEAT_NGRAM_SIZE must be at least 0"),
    (pilish_generate, ["--num_beams=257"], "NUM_BEAMS must lie in \\[1, 256\\], not 257"),
])
def test_each_script_refuses_a_value_just_outside_its_range(module, argv, message, tmp_path):
    folder = tmp_path / "out"
    where = {train_model: ["--model_dir", "--tokenizer_dir"], train_tokenizer: ["--tokenizer_dir"]}.get(
        module, ["--model_dir"])
    extra = ["--dataset=/nonexistent.txt"] if module in (train_model, train_tokenizer) else []
    with pytest.raises(UserError, match=message):
        run_main(module, [f"{name}={folder}" for name in where] + extra + argv)
    assert not folder.exists()


@pytest.mark.parametrize("module, argv", [
    (generate_script, ["--top_p=1", "--top_k=0", "--temperature=0"]),
    (pilish_generate, ["--top_p=1", "--top_k=0", "--context_length=0", "--no_repeat_ngram_size=0", "--num_beams=256"]),
])
def test_the_closed_ends_of_the_ranges_are_taken(module, argv, tmp_path):
    """Values at a range's closed end pass the checks and fail only later, at the missing model."""
    with pytest.raises(UserError) as error:
        run_main(module, [f"--model_dir={tmp_path / 'missing'}", *argv])
    assert "missing" in str(error.value) and "must" not in str(error.value)


def test_a_reader_that_stops_early_ends_the_script_quietly(tmp_path):
    """`generate.py | head -c 1`: the closed pipe is no traceback; status 141, as a shell tool killed by
    SIGPIPE reports."""
    import subprocess
    import sys
    from pathlib import Path
    script = tmp_path / "talk.py"
    script.write_text("LINES = 100_000  # how many\n\n"
                      "from lmkit.settings import run_script\n\n\n"
                      "def main(config):\n"
                      "    for _ in range(config.LINES):\n"
                      "        print('once upon a time ' * 20, flush=True)\n\n\n"
                      "run_script(main, globals())\n")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    process.stdout.read(10)
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 141 and stderr.decode() == ""


def test_a_broken_pipe_is_status_141_in_process(tmp_path, monkeypatch):
    """The same, where mutation testing can see it: run_script's own handling, stdout a real file."""
    from lmkit.settings import run_script
    out = open(tmp_path / "out.txt", "w")
    monkeypatch.setattr(sys, "stdout", out)

    def main(config):
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(SystemExit) as stop:
        run_script(main, vars(generate), [])
    out.write("after")  # the descriptor now goes to /dev/null: nothing reaches the file
    out.close()
    assert stop.value.code == 141 and (tmp_path / "out.txt").read_text() == ""


def test_help_prints_no_blank_comment_line_for_a_setting_without_a_comment(script, capsys):
    run_script(lambda config: pytest.fail("main ran"), script, ["--help"])
    out = capsys.readouterr().out
    assert out.endswith("  --pair=('p', 'q')\n      a tuple\n  --undocumented=7\n")
    assert not [line for line in out.splitlines() if line and not line.strip()]  # no whitespace-only line


def test_out_of_memory_is_told_from_its_words():
    from lmkit.settings import is_out_of_memory
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.75 GiB total)"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                                         "can't allocate memory: you tried to allocate 4611686018427387904 bytes"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shapes cannot be multiplied (2x3 and 4x5)"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only the allocators' RuntimeErrors say it so
