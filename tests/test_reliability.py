"""Issue 21, part 2: no silently wrong answer from a damaged checkpoint, a config that disagrees
with the weights, NaN weights, empty data, a byte-order mark, special tokens typed in a prompt, a
piped --check_file, or decomposed letters; out-of-range numbers are one line before any work."""

import json
import shutil
import unicodedata

import pytest
from safetensors.torch import load_file, save_file

import generate
import pilish_generate
import train_model
import train_tokenizer
from conftest import run_main, train
from lmkit import training
from lmkit.folders import load_model
from lmkit.settings import UserError
from lmkit.text import EOT, split_words, warn_unknown_words
from lmkit.tokenizer import build_marking_normalizer
from pilish.rules import verify
from test_guards import checksums, copy_model


@pytest.mark.parametrize("damage, why", [
    (lambda c: (c / "optimizer.pt").unlink(), "it has no optimizer.pt"),
    (lambda c: (c / "scheduler.pt").unlink(), "it has no scheduler.pt"),
    (lambda c: (c / "trainer_state.json").write_text("{}"), "records step None"),
])
def test_an_incomplete_checkpoint_is_set_aside_not_resumed(corpus_file, tokenizer_dir, tmp_path, capsys, damage, why):
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--eval_steps=2")
    damage(tmp_path / "checkpoint-4")
    capsys.readouterr()
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=6", "--eval_steps=2")
    captured = capsys.readouterr()
    assert "checkpoint-4 cannot be resumed (" in captured.err and why in captured.err
    assert f"resuming from {tmp_path / 'checkpoint-2'}" in captured.out
    assert (tmp_path / "incomplete-checkpoint-4").is_dir()
    assert "do not match the ones in the `trainer_state.json`" not in captured.out + captured.err


def test_a_checkpoint_whose_name_lies_about_its_step_is_not_resumed(tmp_path, model_dir):
    checkpoint = next(model_dir.glob("checkpoint-*"))
    shutil.copytree(checkpoint, tmp_path / "checkpoint-99999999999999999999")
    shutil.copytree(checkpoint, tmp_path / checkpoint.name)
    found, incomplete = training.find_checkpoints(tmp_path)
    assert found == tmp_path / checkpoint.name
    assert [path.name for path, _ in incomplete] == ["checkpoint-99999999999999999999"]
    assert "not the step in its name" in incomplete[0][1]


@pytest.mark.parametrize("change, message", [
    (lambda c: {"n_layer": c["n_layer"] - 1}, "has weights that no layer takes"),
    (lambda c: {"n_layer": c["n_layer"] + 1}, "has no weights for"),
    (lambda c: {"n_embd": c["n_embd"] * 2}, "has weights of another shape"),
    (lambda c: {"model_type": "llama"}, "describes a 'llama' model"),
])
def test_a_config_that_disagrees_with_the_weights_is_one_line(model_dir, tmp_path, change, message):
    folder = copy_model(model_dir, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change(config)}))
    before = checksums(folder)
    with pytest.raises(UserError, match=message):
        run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=5"])
    assert checksums(folder) == before


def test_nan_weights_are_refused_not_scored(model_dir, tmp_path):
    folder = copy_model(model_dir, tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    next(iter(weights.values())).view(-1)[0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match="model.safetensors holds NaN or infinite weights"):
        load_model(folder, "cpu")


def test_data_with_no_text_is_refused(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text('{"text": ""}\n{"text": "   "}\n')
    with pytest.raises(UserError, match="has no stories in it"):
        run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path / 'tok'}"])
    assert not (tmp_path / "tok" / "tokenizer.json").exists()


def test_a_tokenizer_of_marks_alone_is_refused(tmp_path, corpus_file):
    with pytest.raises(UserError, match="no word of .* occurs MIN_FREQUENCY=1000000000 times"):
        run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tmp_path / 'tok'}",
                                   "--min_frequency=1000000000"])


def test_invisible_characters_and_unicode_hyphens_are_no_words():
    normalizer = build_marking_normalizer()
    assert normalizer.normalize_str("\ufeffOnce a well\u2010known\u200b cat") == "▁once▁a▁well-known▁cat"


def test_special_tokens_in_a_prompt_are_read_and_named_as_the_tokenizer_reads_them(model_dir, capsys):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = f"the cat {EOT} the dog"
    words, ids = split_words(tokenizer, prompt)
    assert ids == tokenizer(prompt)["input_ids"] and tokenizer.eos_token_id in ids and EOT in words
    warn_unknown_words(tokenizer, prompt)
    err = capsys.readouterr().err
    assert "not in the vocabulary" not in err and f"holds {EOT}, which the model reads as special" in err
    with pytest.raises(UserError, match=f"holds the special token {EOT.replace('|', '.')}"):
        run_main(pilish_generate, [f"--model_dir={model_dir}", f"--prompt=a {EOT}", "--num_digits=5",
                                   "--digits=1"])


def test_check_file_from_a_pipe_is_read_once(tmp_path, capsys):
    import os
    read, write = os.pipe()
    os.write(write, "how i need a drink\n".encode())
    os.close(write)
    run_main(pilish_generate, [f"--check_file=/dev/fd/{read}"])
    os.close(read)
    assert "✓ 5/5 digits of pi" in capsys.readouterr().out


def test_decomposed_accents_and_unicode_hyphens_count_as_their_usual_forms():
    text = "cómo la vie well\u2010known"
    assert verify(unicodedata.normalize("NFD", text), "4239", "standard").ok
    assert verify(text, "4239", "standard").ok


@pytest.mark.parametrize("module, argv, message", [
    (generate, ["--seed=-1"], "SEED must lie in"),
    (generate, ["--seed=4294967296"], "SEED must lie in"),
    (generate, ["--temperature=0.000001"], "TEMPERATURE must lie in"),
    (generate, ["--num_samples=100000"], "NUM_SAMPLES must lie in"),
    (generate, ["--threads=100000"], "THREADS must lie in"),
    (train_tokenizer, ["--vocab_size=100000000000000000000"], "VOCAB_SIZE must lie in"),
    (train_tokenizer, ["--min_frequency=100000000000000000000"], "MIN_FREQUENCY must lie in"),
    (train_model, ["--seed=100000000000000000000"], "SEED must lie in"),
    (train_model, ["--num_proc=100000"], "NUM_PROC must lie in"),
])
def test_numbers_beyond_what_the_libraries_take_are_one_line(module, argv, message, tmp_path):
    where = {train_model: ["--model_dir", "--tokenizer_dir"], train_tokenizer: ["--tokenizer_dir"]}.get(
        module, ["--model_dir"])
    with pytest.raises(UserError, match=message):
        run_main(module, [f"{name}={tmp_path / 'out'}" for name in where] + argv)
    assert not (tmp_path / "out").exists()


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(corpus_file, tokenizer_dir, tmp_path):
    with pytest.raises(UserError, match="needs about .* GiB, and cpu has .* GiB free: lower BATCH_SIZE"):
        train(corpus_file, tokenizer_dir, tmp_path / "model", "--n_layer=100000000000000000000")
    assert not (tmp_path / "model").exists()


def test_training_memory_counts_the_parameters_of_a_real_model():
    parameters, needed = training.training_memory(100, context_length=16, n_embd=8, n_layer=2, n_head=2,
                                                  batch_size=4)
    model = training.build_model(100, context_length=16, n_embd=8, n_layer=2, n_head=2)
    assert parameters == training.count_parameters(model)[0]
    assert needed > 16 * parameters


@pytest.mark.parametrize("argv, message", [
    (["--seed=-5"], "SEED must lie in"),
    (["--num_beams=100000"], "NUM_BEAMS must lie in"),
    (["--num_samples=100000"], "NUM_SAMPLES must lie in"),
    (["--decoding=sample", "--temperature=1e-300"], "TEMPERATURE must lie in"),
    (["--repetition_penalty=1e300"], "REPETITION_PENALTY must lie in"),
])
def test_pilish_numbers_beyond_what_the_libraries_take_are_one_line(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        run_main(pilish_generate, [f"--model_dir={tmp_path / 'none'}", *argv])


def test_a_truncated_ngram_file_is_one_note_and_the_text_stays_exact(model_dir, tmp_path, capsys):
    folder = copy_model(model_dir, tmp_path / "model")
    ngrams = folder / "ngrams.pt"
    ngrams.write_bytes(ngrams.read_bytes()[:100])
    run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=5"])
    captured = capsys.readouterr()
    assert "ngrams.pt is damaged" in captured.err and "Traceback" not in captured.err
    assert "✓ 5/5 digits of pi" in captured.out
