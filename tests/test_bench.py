"""Smoke tests of the benchmarks on tiny settings, so that they cannot silently rot: each runs its whole
main on the test corpus and the tiny model, records nothing, and prints a table of sane numbers. And
the layout of bench/: modules run with `python -m bench.NAME`, that import only the library and
bench's own helpers."""

import ast
import math
import re
import subprocess
import sys

import pytest

import bench.generate_speed
import bench.markov_pilish
import bench.lm_loss_speed
import bench.pilish_search
import bench.quality
import bench.tokenizer_quality
import bench.train_speed
from bench.support import command_line
from conftest import ROOT, run_main

BENCHES = ["generate_speed", "lm_loss_speed", "pilish_search", "quality", "tokenizer_quality", "train_speed"]
HELPERS = {"bench.support", "bench.pilish_texts", "bench.markov_pilish"}  # what a benchmark may import from bench/
SCRIPTS = {"train_tokenizer", "train_model", "generate", "pilish_generate"}


@pytest.fixture
def no_record():
    """Fails the test if the benchmark wrote to BENCHMARKS.md (every test runs with --record=false)."""
    benchmarks = (ROOT / "BENCHMARKS.md").read_bytes()
    yield
    assert (ROOT / "BENCHMARKS.md").read_bytes() == benchmarks  # --record=false wrote nothing


def table_row(out, label):
    return next(line for line in out.splitlines() if line.startswith(label))


def test_train_speed(no_record, corpus_file, tokenizer_dir, capsys):
    # a tiny model (a context longer than most test stories, so the tutorial setup pads)
    run_main(bench.train_speed, [
        f"--train_file={corpus_file}", f"--tokenizer_dir={tokenizer_dir}", "--vocab_size=200", "--context_length=128",
        "--n_layer=1", "--n_head=2", "--n_embd=32", "--batch_sizes=2", "--compile=false", "--steps=2",
        "--warmup_steps=1", "--repeats=1", "--matmul_size=64", "--record=false"])
    out = capsys.readouterr().out
    stock, chunked = table_row(out, "ours, stock loss, eager"), table_row(out, "ours, chunked loss, eager")
    table_row(out, "tutorial (padded per story")
    assert "1.00x" in stock and re.search(r"\d+ MiB", chunked)
    padding = float(re.search(r"\(([\d.]+)% padding\)", out).group(1))
    assert 0 < padding < 100
    assert "(not recorded: --record=false)" in out


def test_generate_speed(no_record, model_dir, capsys):
    run_main(bench.generate_speed, [f"--model_dir={model_dir}", "--new_tokens=20", "--repeats=1",
                                    "--num_digits_long=60", "--record=false"])
    out = capsys.readouterr().out
    pilish_rows = [line for line in out.splitlines() if line.startswith("Pilish") and "overhead" not in line]
    assert len(pilish_rows) in (4, 7) and all("✓" in row for row in pilish_rows), out  # 3 per thread count + 1
    assert "60 digits" in pilish_rows[-1] and table_row(out, "free sample").split()[-1] == "1.00x"
    assert "(not recorded: --record=false)" in out


def test_quality(no_record, model_dir, corpus_file, capsys):
    run_main(bench.quality, [f"--model_dir={model_dir}", f"--train_file={corpus_file}", f"--valid_file={corpus_file}",
                             "--num_digits=20", "--long_digits=40", "--num_seeds=1", "--num_beams=2",
                             "--free_tokens=20", "--valid_words=50", "--record=false"])
    out = capsys.readouterr().out
    table = out[out.index("\nsetting "):]  # the plain-text table, after any progress lines
    pilish_rows = [line for line in table.splitlines() if line.startswith("Pilish")]
    # beam and sample, before and after issue 11's settings, at 20 and 40 digits: every text exact
    assert len(pilish_rows) == 8 and all("✓ 1/1" in row for row in pilish_rows), out
    assert "✓ 1/1" in table_row(table, "Markov chain (peer), beam 16, 40 digits"), out
    assert re.search(r"\[UNK\] rate of stories\.txt's words: 0\.00% of [\d,]+", out)
    assert "(not recorded: --record=false)" in out


def test_pilish_search(no_record, model_dir, corpus_file, capsys):
    run_main(bench.pilish_search, [f"--model_dir={model_dir}", f"--train_file={corpus_file}",
                                   f"--valid_file={corpus_file}", "--num_digits=20", "--valid_words=50",
                                   "--variants=before|defaults|defaults, beams 4", "--decoding=sample",
                                   "--num_seeds=2", "--record=false"])
    out = capsys.readouterr().out
    table = out[out.index("\nvariant "):]
    rows = [table_row(table, name) for name in ("before ", "defaults ", "defaults, beams 4")]
    assert all("✓ 2/2" in row for row in rows), out
    # the notes name each variant by what it changes
    assert "before: no_repeat_ngram_size=3, repetition_penalty=1.2, no_repeat_words=0, no_immediate_repeat=False" in out
    assert "defaults: pilish_generate defaults" in out and "defaults, beams 4: num_beams=4" in out
    assert "(not recorded: --record=false)" in out


def test_pilish_search_refuses_a_bad_decoding(model_dir):
    from pilish.rules import PilishError
    with pytest.raises(PilishError, match="decoding must be one of"):
        run_main(bench.pilish_search, [f"--model_dir={model_dir}", "--decoding=greedy", "--record=false"])


def test_tokenizer_quality(no_record, tokenizer_dir, corpus_file, capsys):
    run_main(bench.tokenizer_quality, [f"--tokenizer_dir={tokenizer_dir}", f"--valid_file={corpus_file}",
                                       "--num_paragraphs=20", "--record=false"])
    out = capsys.readouterr().out
    assert re.search(r"\[UNK\] rate, stories\.txt words\s+0\.00% of [\d,]+", out), out
    assert re.search(r"round trip, first 20 paragraphs without \[UNK\]\s+[\d.]+%", out), out


def test_lm_loss_speed(no_record, capsys):
    run_main(bench.lm_loss_speed, ["--vocab_size=300", "--n_embd=16", "--tokens=64", "--chunk_sizes=[16,64]",
                                   "--repeats=1", "--record=false"])
    out = capsys.readouterr().out
    assert "1.00x" in table_row(out, "stock (full logits")
    for label in ("chunked, 16 tokens per chunk", "chunked, 64 tokens per chunk", "recompute in backward"):
        loss_difference = float(table_row(out, label).split()[-1])
        assert abs(loss_difference) < 1e-4, out  # the same loss as the stock one


def test_the_benches_default_to_the_scripts_settings():
    """The settings a benchmark copies from a script (it may not import one) still equal the script's."""
    import generate
    import train_model
    for name in ("CONTEXT_LENGTH", "N_LAYER", "N_HEAD", "N_EMBD", "DROPOUT", "LEARNING_RATE"):
        assert getattr(bench.train_speed, name) == getattr(train_model, name), name
    for module in (bench.quality, bench.generate_speed):
        for name in ("TEMPERATURE", "TOP_K", "TOP_P"):
            assert getattr(module, name) == getattr(generate, name), (module.__name__, name)


def imports_and_path_edits(path):
    """(every module that `path` imports, at the top or inside a function; whether it touches
    the `path` attribute of `sys`, the module search path)."""
    found, edits_path = set(), False
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            edits_path |= (node.value.id, node.attr) == ("sys", "path")
    return found, edits_path


@pytest.mark.parametrize("name", [*BENCHES, "support", "pilish_texts"])
def test_benches_import_only_the_library(name):
    imported, edits_path = imports_and_path_edits(ROOT / "bench" / f"{name}.py")
    others = {module for module in imported if module.startswith("bench.") and module.rsplit(".", 1)[0] == "bench"}
    assert others <= HELPERS - {f"bench.{name}"}, f"{name} imports another benchmark: {others - HELPERS}"
    assert not imported & SCRIPTS, f"{name} imports a script: {imported & SCRIPTS}"
    assert not edits_path, f"{name} changes the module search path: run it as `python -m bench.{name}`"


def test_the_import_check_sees_a_bench_import_and_a_path_edit(tmp_path):
    path = tmp_path / "bad.py"
    # the edit is written in two pieces, so that a grep for it in the repo finds only real ones
    path.write_text("import sys\nsys." "path.insert(0, '..')\n\ndef f():\n    from bench.quality import BEFORE\n")
    imported, edits_path = imports_and_path_edits(path)
    assert "bench.quality" in imported and edits_path


def test_the_recorded_command_runs_the_module(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ignored", "--num_seeds=5", "--variants=before|defaults"])
    assert command_line(bench.quality.__file__) == "python -m bench.quality --num_seeds=5 '--variants=before|defaults'"


@pytest.mark.parametrize("script", BENCHES)
def test_help_lists_the_settings(script):
    result = subprocess.run([sys.executable, "-m", f"bench.{script}", "--help"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert f"python -m bench.{script}" in result.stdout
    assert "--record=True" in result.stdout and "python bench/" not in result.stdout


def test_markov_chain_scores_with_stupid_backoff(tokenizer_dir):
    from bench.markov_pilish import MarkovChain
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    stories = ["the cat in the park.", "the cat in the house.", "the dog in the park."]
    chain = MarkovChain(tokenizer, stories, min_count=1)
    the, cat, dog, in_, park, house = tokenizer.convert_tokens_to_ids(
        ["▁the", "▁cat", "▁dog", "▁in", "▁park", "▁house"])
    assert chain.log_score(the, cat, in_) == 0.0  # the trigram's relative frequency: 2 of 2
    assert chain.log_score(in_, the, house) == pytest.approx(math.log(1 / 3))
    assert chain.log_score(park, the, cat) == pytest.approx(math.log(0.4 * 2 / 6))  # back off to "the cat": 2 of 6
    assert chain.log_score(house, dog, park) == pytest.approx(math.log(0.4 ** 2 * 2 / 18))  # to "park": 2 of 18
    assert [token for _, token in chain.best(the, cat, "2")] == [in_]  # the likeliest 2-letter word after "the cat"
    # from 2 on, "in the house" (seen once) backs off to "the house" (once too) and to "house": 1 of 18
    cutoff = MarkovChain(tokenizer, stories, min_count=2)
    assert cutoff.log_score(in_, the, house) == pytest.approx(math.log(0.4 ** 2 * 1 / 18))
    assert cutoff.log_score(in_, the, park) == pytest.approx(math.log(2 / 3))


def test_markov_pilish_is_exact_and_never_repeats_a_word(tokenizer_dir, corpus_file, capsys):
    from bench.markov_pilish import MarkovChain, markov_text
    from pilish.fluency import read_stories, tokens
    from pilish.rules import get_digits, verify
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    digits = get_digits("pi", 100)
    ids, text = markov_text(MarkovChain(tokenizer, read_stories(corpus_file)), tokenizer, digits, num_beams=4)
    assert verify(text, digits, "basic").ok and len(ids) >= 100
    words = [token for token in tokens(text) if token[0].isalpha()]
    assert all(a != b for a, b in zip(words, words[1:])) and re.search(r"[.,!?]", text)
    run_main(bench.markov_pilish, [f"--model_dir={tokenizer_dir}", f"--train_file={corpus_file}",
                                   "--num_digits=30", "--num_beams=2"])
    assert "✓ 30/30 digits of pi" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["markov_pilish", "blind_reading"])
def test_the_reading_tools_import_only_the_library(name):
    imported, edits_path = imports_and_path_edits(ROOT / "bench" / f"{name}.py")
    others = {module for module in imported if module.startswith("bench.") and module.rsplit(".", 1)[0] == "bench"}
    assert others <= {"bench.support"} and not imported & SCRIPTS and not edits_path
