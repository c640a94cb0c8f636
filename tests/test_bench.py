"""Smoke tests of the benchmarks on tiny settings, so that they cannot silently rot: each runs its whole
main on the test corpus and the tiny model, records nothing, and prints a table of sane numbers."""

import importlib
import re
import sys

import pytest

from conftest import ROOT, run_main

BENCH = ROOT / "bench"


@pytest.fixture
def bench_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import their helper module _bench
    benchmarks = (ROOT / "BENCHMARKS.md").read_bytes()

    def load(name):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    yield load
    assert (ROOT / "BENCHMARKS.md").read_bytes() == benchmarks  # --record=false wrote nothing


def table_row(out, label):
    return next(line for line in out.splitlines() if line.startswith(label))


def test_train_speed(bench_module, corpus_file, tokenizer_dir, capsys, monkeypatch):
    import train_model
    module = bench_module("train_speed")
    # the benchmark measures train_model.py's model: a tiny one here (a context longer than most
    # test stories, so the tutorial setup pads)
    for name, value in dict(CONTEXT_LENGTH=128, N_LAYER=1, N_HEAD=2, N_EMBD=32).items():
        monkeypatch.setattr(train_model, name, value)
    run_main(module, [f"--train_file={corpus_file}", f"--tokenizer_dir={tokenizer_dir}", "--vocab_size=200",
                      "--batch_sizes=2", "--compile=false", "--steps=2", "--warmup_steps=1", "--repeats=1",
                      "--matmul_size=64", "--record=false"])
    out = capsys.readouterr().out
    stock, chunked = table_row(out, "ours, stock loss, eager"), table_row(out, "ours, chunked loss, eager")
    table_row(out, "tutorial (padded per story")
    assert "1.00x" in stock and re.search(r"\d+ MiB", chunked)
    padding = float(re.search(r"\(([\d.]+)% padding\)", out).group(1))
    assert 0 < padding < 100
    assert "(not recorded: --record=false)" in out


def test_generate_speed(bench_module, model_dir, capsys):
    module = bench_module("generate_speed")
    run_main(module, [f"--model_dir={model_dir}", "--new_tokens=20", "--repeats=1", "--num_digits_long=60",
                      "--record=false"])
    out = capsys.readouterr().out
    pilish_rows = [line for line in out.splitlines() if line.startswith("Pilish") and "overhead" not in line]
    assert len(pilish_rows) in (4, 7) and all("✓" in row for row in pilish_rows), out  # 3 per thread count + 1
    assert "60 digits" in pilish_rows[-1] and table_row(out, "free sample").split()[-1] == "1.00x"
    assert "(not recorded: --record=false)" in out


def test_quality(bench_module, model_dir, corpus_file, capsys):
    module = bench_module("quality")
    run_main(module, [f"--model_dir={model_dir}", f"--train_file={corpus_file}", f"--valid_file={corpus_file}",
                      "--num_digits=20", "--long_digits=40", "--num_seeds=1", "--num_beams=2", "--free_tokens=20",
                      "--valid_words=50", "--record=false"])
    out = capsys.readouterr().out
    table = out[out.index("\nsetting "):]  # the plain-text table, after any progress lines
    pilish_rows = [line for line in table.splitlines() if line.startswith("Pilish")]
    # beam and sample, before and after issue 11's settings, at 20 and 40 digits: every text exact
    assert len(pilish_rows) == 8 and all("✓ 1/1" in row for row in pilish_rows), out
    assert re.search(r"\[UNK\] rate of stories\.txt's words: 0\.00% of [\d,]+", out)
    assert "(not recorded: --record=false)" in out


@pytest.mark.parametrize("script", ["train_speed", "generate_speed", "quality"])
def test_help_lists_the_settings(script):
    import subprocess
    result = subprocess.run([sys.executable, f"bench/{script}.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--record=True" in result.stdout and "--seed=42" in result.stdout
