"""Issue 21, part 2: no silently wrong answer from a damaged checkpoint, a config that disagrees
with the weights, NaN weights, empty data, a byte-order mark, special tokens typed in a prompt, a
piped --check_file, or decomposed letters; out-of-range numbers are one line before any work."""

import errno
import json
import re
import shutil
import unicodedata
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import generate
import pilish_generate
import train_model
import train_tokenizer
from conftest import run_main, train
from lmkit import training
from lmkit.folders import load_model
from lmkit.settings import UserError, run_script
from lmkit.text import EOT, split_words, warn_unknown_words
from lmkit.tokenizer import build_marking_normalizer
from pilish.rules import verify
from test_guards import checksums, copy_model


def zip_of_junk(path):
    """A zip archive, but not one torch.save wrote (no pickle, no version record)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("optimizer/junk", "not a state")


def flip_a_byte(path):
    """The same length and a whole zip directory, but one byte of a member's data changed."""
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, why", [
    (lambda c: (c / "optimizer.pt").unlink(), "it has no optimizer.pt"),
    (lambda c: (c / "scheduler.pt").unlink(), "it has no scheduler.pt"),
    (lambda c: (c / "trainer_state.json").write_text("{}"), "records step None"),
    (lambda c: zip_of_junk(c / "optimizer.pt"), "optimizer.pt is cut short or garbled"),
    (lambda c: flip_a_byte(c / "optimizer.pt"), "optimizer.pt is cut short or garbled"),
    (lambda c: (shutil.rmtree(c), c.write_text("x")), "it is a file, not a folder"),  # would block saving step 4
])
def test_an_incomplete_checkpoint_is_set_aside_not_resumed(corpus_file, tokenizer_dir, tmp_path, capsys, damage, why):
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--eval_steps=2")
    damage(tmp_path / "checkpoint-4")
    capsys.readouterr()
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=6", "--eval_steps=2")
    captured = capsys.readouterr()
    assert "checkpoint-4 cannot be resumed (" in captured.err and why in captured.err
    assert f"resuming from {tmp_path / 'checkpoint-2'}" in captured.out
    assert (tmp_path / "incomplete-checkpoint-4").exists() and (tmp_path / "checkpoint-4").is_dir()
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 6
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


def test_weights_of_zeros_are_refused(model_dir, tmp_path):
    """Finite, the right shapes, and no model: it writes uniformly random words, and scores them."""
    folder = copy_model(model_dir, tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    save_file({name: torch.zeros_like(tensor) for name, tensor in weights.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(UserError, match="model.safetensors holds only zeros, no trained weights"):
        load_model(folder, "cpu")
    weights[next(iter(weights))].zero_()  # one tensor of zeros is no damage
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    assert load_model(folder, "cpu")[0] is not None


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
    warn_unknown_words(tokenizer, "the cat [PAD] the dog")  # no story ends: the line ends with its own words
    assert capsys.readouterr().err == "warning: the prompt holds [PAD], which the model reads as special tokens\n"
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
    # Path("") read the current folder
    (train_tokenizer, ["--dataset="], "^DATASET is empty: give a path \\(or sample, or a hub name\\)$"),
    (train_tokenizer, ["--dataset=sample", "--tokenizer_dir= "], "^TOKENIZER_DIR is empty: give a path$"),
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
    (["--lookahead_weight=1e30"], "LOOKAHEAD_WEIGHT must lie in"),  # it broke the text (no progress at digit 1)
    (["--no_repeat_words=-1"], "NO_REPEAT_WORDS must be at least 0"),  # silently off, as 0 is
    (["--ngram_weight=1.5"], "NGRAM_WEIGHT must lie in"),  # a share: above 1 the model's part turns negative
    (["--sentence_bonus=-1"], "SENTENCE_BONUS must lie in"),  # a cost: it would end no sentence at all
    (["--unseen_pair_cost=-3"], "UNSEEN_PAIR_COST must lie in"),  # a bonus for pairs no story has
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


# ---------------------------------------------------------------- a full disk, a read-only folder, no memory

def failing_write(code, message, error=None):
    """A writer that puts half a file at `path` and then fails as the system would (errno `code`), or
    with `error` (what torch.save raises has no errno)."""
    def write(path):
        Path(path).write_bytes(b"half")
        raise error or OSError(code, message, str(path))
    return write


@pytest.mark.parametrize("code, message, error, says", [
    (errno.ENOSPC, "No space left on device", None, "the disk is full; free some space and run the same command"),
    (errno.EROFS, "Read-only file system", None, "Read-only file system; make its folder writable"),
    (None, None, RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4052"),
     "the disk is full; free some space and run the same command"),
])
def test_a_checkpoint_cut_short_by_the_disk_is_removed_and_the_run_resumes(
        corpus_file, tokenizer_dir, tmp_path, monkeypatch, capsys, code, message, error, says):
    from transformers import Trainer
    from lmkit import settings
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=2", "--eval_steps=2")
    before = checksums(tmp_path / "checkpoint-2")
    write = failing_write(code, message, error)
    monkeypatch.setattr(settings, "free_bytes", lambda path: 0 if (tmp_path / "checkpoint-4").exists() else 2**40)
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler",
                        lambda self, output_dir: write(Path(output_dir, "optimizer.pt")))
    with pytest.raises(UserError, match=f"{says}.*: it resumes from checkpoint-2 .checkpoint-4 was half-written and is removed"):
        train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--eval_steps=2")
    assert not (tmp_path / "checkpoint-4").exists()
    assert checksums(tmp_path / "checkpoint-2") == before
    monkeypatch.undo()
    capsys.readouterr()
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--eval_steps=2")
    assert f"resuming from {tmp_path / 'checkpoint-2'}" in capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 4


def test_a_full_disk_while_the_model_is_saved_leaves_the_old_model_whole(corpus_file, tokenizer_dir, tmp_path,
                                                                         monkeypatch):
    import transformers.modeling_utils
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=2", "--eval_steps=2")
    model_files = {name: digest for name, digest in checksums(tmp_path).items() if "/" not in name}
    save_file = transformers.modeling_utils.safe_save_file

    def fail_outside_checkpoints(tensors, filename, metadata=None):
        if "checkpoint-" in str(filename):
            return save_file(tensors, filename, metadata=metadata)
        failing_write(errno.ENOSPC, "No space left on device")(filename)
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", fail_outside_checkpoints)
    with pytest.raises(UserError, match=f"cannot write {tmp_path}: the disk is full"):
        train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--eval_steps=2")
    after = checksums(tmp_path)
    assert {name: after.get(name) for name in model_files} == model_files  # the old model, every file whole
    assert not list(tmp_path.glob(".saving-*"))


def test_a_full_disk_while_the_tokenizer_is_saved_leaves_the_old_one_whole(corpus_file, tokenizer_dir, tmp_path,
                                                                         monkeypatch):
    folder = tmp_path / "tokenizer"
    shutil.copytree(tokenizer_dir, folder)
    before = checksums(folder)
    from transformers import PreTrainedTokenizerBase
    write = failing_write(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained",
                        lambda self, directory, **kwargs: write(Path(directory, "tokenizer.json")))
    with pytest.raises(UserError, match="the disk is full"):
        run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={folder}", "--vocab_size=300",
                                   "--overwrite=true"])
    assert checksums(folder) == before


def test_a_full_disk_while_the_pilish_is_written_leaves_no_half_file(model_dir, tmp_path, monkeypatch):
    output = tmp_path / "pilish.txt"
    output.write_text("an older text\n")
    monkeypatch.setattr(Path, "write_text", lambda self, *args, **kwargs: failing_write(
        errno.ENOSPC, "No space left on device")(self))
    with pytest.raises(UserError, match=f"cannot write {output}: the disk is full"):
        run_main(pilish_generate, [f"--model_dir={model_dir}", "--num_digits=5", f"--output_file={output}"])
    monkeypatch.undo()
    assert output.read_text() == "an older text\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pilish.txt"]


@pytest.mark.parametrize("problem, says", [
    (lambda: torch.empty(2**62, dtype=torch.uint8),
     r"error: out of memory \(\[enforce fail.*can't allocate memory.*\): lower BATCH_SIZE"),
    (lambda: [0] * 2**62, r"error: out of memory \(MemoryError\): lower BATCH_SIZE"),
    (lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device", "/x/metrics.json")),
     "error: cannot write /x/metrics.json: the disk is full"),
    (lambda: (_ for _ in ()).throw(OSError(errno.EACCES, "Permission denied", "/x/y")),
     "error: cannot write /x/y: Permission denied; make its folder writable"),
])
def test_no_memory_and_unwritable_files_anywhere_are_one_line(problem, says, capsys):
    with pytest.raises(SystemExit) as stop:
        run_script(lambda config: problem(), vars(train_model), [], memory_hint="lower BATCH_SIZE")
    err = capsys.readouterr().err
    assert stop.value.code == 1 and re.fullmatch(says + r".*\n", err) and "Traceback" not in err


@pytest.mark.parametrize("error", [RuntimeError("shapes do not match"), OSError(errno.ENOENT, "No such file")])
def test_other_errors_are_not_taken_for_memory_or_disk(error):
    def main(config):
        raise error
    with pytest.raises(type(error)):
        run_script(main, vars(train_model), [])


@pytest.mark.parametrize("damage, says", [
    (lambda folder: (folder / "tokenizer_config.json").unlink(), "but no tokenizer_config.json"),
    (lambda folder: (folder / "tokenizer_config.json").write_text("{}"), "names no end-of-story or padding token"),
])
def test_a_tokenizer_without_its_config_is_one_line(model_dir, tokenizer_dir, tmp_path, damage, says):
    model = copy_model(model_dir, tmp_path / "model")
    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(tokenizer_dir, tokenizer)
    damage(model)
    damage(tokenizer)
    before = checksums(tmp_path)
    with pytest.raises(UserError, match=f"{says}: copy the tokenizer the model was trained with back"):
        run_main(generate, [f"--model_dir={model}"])
    with pytest.raises(UserError, match=f"{says}: run train_tokenizer.py again"):
        run_main(train_model, [f"--tokenizer_dir={tokenizer}", f"--model_dir={tmp_path / 'new'}"])
    assert checksums(tmp_path) == before and not (tmp_path / "new").exists()


def test_a_model_saved_as_pytorch_model_bin_loads_too(model_dir, tmp_path):
    """Older transformers and other tools save pytorch_model.bin: found, checked and loaded alike."""
    folder = copy_model(model_dir, tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    model = load_model(folder, "cpu")[0]
    assert torch.equal(model.transformer.wte.weight, weights["transformer.wte.weight"])
