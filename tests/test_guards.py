"""Issue 12: no run loses a trained model, NaN recovery works, and every bad value is one line.

The guarded cases compare the checksums of every file before and after the refused run.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerControl, TrainerState

import generate
import pilish_generate
import train_model
import train_tokenizer
from conftest import ROOT, run_main, train
from lmkit import training
from lmkit.folders import load_tokenizer, tokenizer_fingerprint, vocabulary_fingerprint
from lmkit.settings import UserError, run_script
from lmkit.text import SPACE_MARK


def checksums(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def swapped_tokenizer(tokenizer_dir, folder):
    """A copy of the tokenizer with two words' ids swapped: the same size, another vocabulary."""
    shutil.copytree(tokenizer_dir, folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    the, and_ = SPACE_MARK + "the", SPACE_MARK + "and"
    vocab[the], vocab[and_] = vocab[and_], vocab[the]
    (folder / "tokenizer.json").write_text(json.dumps(data))
    return folder


def copy_model(model_dir, folder):
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    return folder


# ---------------------------------------------------------------- MODEL_DIR and TOKENIZER_DIR guards

def test_model_dir_is_never_overwritten_by_another_tokenizer_or_other_settings(corpus_file, tokenizer_dir, tmp_path):
    model_dir = tmp_path / "model"
    train(corpus_file, tokenizer_dir, model_dir, "--max_steps=2", "--eval_steps=2")
    other = swapped_tokenizer(tokenizer_dir, tmp_path / "other")
    before = checksums(model_dir)
    # a checkpoint made with a tokenizer of the same size but other ids is not resumed
    with pytest.raises(UserError, match="checkpoint-2 was trained with another tokenizer.*--overwrite=true"):
        train(corpus_file, other, model_dir, "--max_steps=4")
    assert checksums(model_dir) == before

    # a finished model without checkpoints is not replaced by other settings or another tokenizer
    shutil.rmtree(model_dir / "checkpoint-2")
    before = checksums(model_dir)
    with pytest.raises(UserError, match="holds a finished model trained with n_embd 32 \\(now 16\\).*MODEL_DIR"):
        train(corpus_file, tokenizer_dir, model_dir, "--max_steps=2", "--eval_steps=2", "--n_embd=16")
    with pytest.raises(UserError, match="LEARNING_RATE 0.01 -> 0.02"):
        train(corpus_file, tokenizer_dir, model_dir, "--max_steps=2", "--eval_steps=2", "--learning_rate=0.02")
    with pytest.raises(UserError, match="another tokenizer"):
        train(corpus_file, other, model_dir, "--max_steps=2", "--eval_steps=2")
    assert checksums(model_dir) == before

    # on purpose: --overwrite=true starts afresh
    train(corpus_file, tokenizer_dir, model_dir, "--max_steps=2", "--eval_steps=2", "--n_embd=16", "--overwrite=true")
    assert json.loads((model_dir / "config.json").read_text())["n_embd"] == 16


def test_rerunning_a_finished_command_changes_no_file(model_dir, corpus_file, tokenizer_dir, tmp_path, capsys):
    """A finished run is a fixed point: the same command again trains nothing (before this, each rerun
    trained one more step and checkpoint rotation finally deleted the checkpoint of the saved model)."""
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    before = checksums(folder)
    for _ in range(2):
        train(corpus_file, tokenizer_dir, folder, "--max_steps=60", "--threads=2", "--eval_blocks=5")  # harmless ones
        assert checksums(folder) == before
    metrics = json.loads((folder / "metrics.json").read_text())
    out = capsys.readouterr().out
    assert (f"{folder} already holds the model these settings train (60 steps, validation loss "
            f"{metrics['valid_loss']:.3f}): nothing to do. To train it further, raise MAX_STEPS") in out
    # a deleted ngrams.pt is made again, the same; nothing else changes
    saved = torch.load(folder / "ngrams.pt")
    (folder / "ngrams.pt").unlink()
    train(corpus_file, tokenizer_dir, folder, "--max_steps=60")
    assert all(torch.equal(saved[name], table) for name, table in torch.load(folder / "ngrams.pt").items())
    assert {k: v for k, v in checksums(folder).items() if k != "ngrams.pt"} == \
        {k: v for k, v in before.items() if k != "ngrams.pt"}
    # training further is on purpose: more steps resume from the last checkpoint
    train(corpus_file, tokenizer_dir, folder, "--max_steps=62")
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 62
    assert checksums(folder)["model.safetensors"] != before["model.safetensors"]


def test_other_settings_over_a_finished_model_train_no_step_more(model_dir, corpus_file, tokenizer_dir, tmp_path,
                                                                 capsys):
    """Its last checkpoint is at the step these settings end on: the Trainer, resumed there, trains one
    step more all the same (and rotation deletes the oldest checkpoint). Refused unless on purpose."""
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    before = checksums(folder)
    for change in ("--learning_rate=0.02", "--seed=7"):
        with pytest.raises(UserError, match=f"holds a model trained for 60 steps, all that these settings train "
                                            f"\\(60\\); the settings that differ \\(.*(LEARNING_RATE|SEED).*--overwrite"):
            train(corpus_file, tokenizer_dir, folder, "--max_steps=60", change)
    (folder / "training_run.json").unlink()  # no record to compare with: the checkpoint still says it is done
    with pytest.raises(UserError, match="holds a model trained for 60 steps"):
        train(corpus_file, tokenizer_dir, folder, "--max_steps=60")
    assert checksums(folder) == {name: sum_ for name, sum_ in before.items() if name != "training_run.json"}
    # on purpose: afresh, with the new settings, the old checkpoints gone once the new run has saved one
    train(corpus_file, tokenizer_dir, folder, "--max_steps=60", "--learning_rate=0.02", "--overwrite=true")
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 60
    assert json.loads((folder / "training_run.json").read_text())["settings"]["LEARNING_RATE"] == 0.02
    assert "--overwrite: starting afresh" in capsys.readouterr().out and not list(folder.glob("replaced-*"))


def test_a_run_stopped_after_its_last_checkpoint_saves_that_checkpoint(model_dir, corpus_file, tokenizer_dir,
                                                                      tmp_path, capsys):
    """Killed between the last checkpoint and the final save: the next run trains no step more (the
    Trainer would train one past MAX_STEPS) and saves the checkpoint's weights as the model."""
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    last = training.find_checkpoints(folder)[0]
    assert last.name == "checkpoint-60"
    for path in folder.iterdir():
        if path.is_file():
            path.unlink()
    train(corpus_file, tokenizer_dir, folder, "--max_steps=60")
    assert "checkpoint-60 holds all 60 steps these settings train: it becomes the model" in capsys.readouterr().out
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["tokens_per_second"] is None and metrics["train_loss"] > 0
    saved, finished = load_file(folder / "model.safetensors"), load_file(model_dir / "model.safetensors")
    assert saved.keys() == finished.keys() and all(torch.equal(saved[k], finished[k]) for k in saved)
    assert sorted(path.name for path in folder.glob("checkpoint-*")) == sorted(
        path.name for path in model_dir.glob("checkpoint-*"))
    before = checksums(folder)
    train(corpus_file, tokenizer_dir, folder, "--max_steps=60")  # and now it is a finished run's fixed point
    assert checksums(folder) == before


@pytest.mark.parametrize("damage, says", [
    (lambda f: (f / "model.safetensors").write_bytes(b"x" * 100), "model.safetensors is cut short or garbled"),
    (lambda f: ((f / "model.safetensors").unlink(), (f / "model.safetensors").mkdir()),
     "model.safetensors is cut short or garbled"),
    (lambda f: (f / "config.json").write_text("{oops"), "config.json cannot be read"),
])
def test_a_damaged_model_is_never_called_trained(model_dir, corpus_file, tokenizer_dir, tmp_path, capsys, damage,
                                                 says):
    """The same command again does not say "nothing to do" over a model that cannot load: the damaged
    file is put back from the last checkpoint when that holds every step (nothing else changes), and
    otherwise one line says what is wrong, changing nothing."""
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    damage(folder)
    name = "config.json" if "config" in says else "model.safetensors"
    train(corpus_file, tokenizer_dir, folder, "--max_steps=60")
    out = capsys.readouterr().out
    assert f"was damaged (its {says}" in out and f"put back {name} from checkpoint-60" in out
    now, then = checksums(folder), checksums(model_dir)
    assert {k: v for k, v in now.items() if k != name} == {k: v for k, v in then.items() if k != name}
    if name == "config.json":
        assert json.loads((folder / name).read_text()) == json.loads((model_dir / name).read_text())
    else:
        assert now[name] == then[name]  # the checkpoint's weights are the final ones, byte for byte
    train(corpus_file, tokenizer_dir, folder, "--max_steps=60")  # whole again: a finished run's fixed point
    assert "already holds the model these settings train" in capsys.readouterr().out
    bare = copy_model(model_dir, tmp_path / "bare")  # no checkpoint to put it back from
    damage(bare)
    before = checksums(bare)
    with pytest.raises(UserError, match=f"the model in {bare} is damaged: its {says}.*--overwrite=true"):
        train(corpus_file, tokenizer_dir, bare, "--max_steps=60")
    assert checksums(bare) == before


def test_the_model_is_not_saved_over_its_own_tokenizer_folder(corpus_file, tokenizer_dir, tmp_path):
    folder = tmp_path / "tokenizer"
    shutil.copytree(tokenizer_dir, folder)
    before = checksums(folder)
    with pytest.raises(UserError, match="MODEL_DIR is the tokenizer folder .*: the model would be saved over it"):
        train(corpus_file, folder, folder / ".." / "tokenizer", "--max_steps=2")
    assert checksums(folder) == before


def test_loading_a_model_checks_its_tokenizer(model_dir, corpus_file, tokenizer_dir, tmp_path):
    folder = copy_model(model_dir, tmp_path / "model")
    other = swapped_tokenizer(tokenizer_dir, tmp_path / "other")
    shutil.copy(other / "tokenizer.json", folder / "tokenizer.json")
    with pytest.raises(UserError, match="tokenizer.json is not the tokenizer this model was trained with"):
        run_main(generate, [f"--model_dir={folder}", "--max_new_tokens=2"])
    # without the run record (a model from elsewhere), a smaller tokenizer is still caught by its size
    (folder / "training_run.json").unlink()
    small = tmp_path / "small"
    run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={small}", "--vocab_size=40"])
    shutil.copy(small / "tokenizer.json", folder / "tokenizer.json")
    with pytest.raises(UserError, match="not the tokenizer this model was trained with"):
        run_main(pilish_generate, [f"--model_dir={folder}", "--num_digits=3"])


def test_train_tokenizer_refuses_a_model_folder_and_another_tokenizer(model_dir, corpus_file, tokenizer_dir, tmp_path):
    folder = copy_model(model_dir, tmp_path / "model")
    before = checksums(folder)
    with pytest.raises(UserError, match="holds a model.*another TOKENIZER_DIR"):
        run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={folder}", "--vocab_size=40"])
    assert checksums(folder) == before
    tokenizer_copy = shutil.copytree(tokenizer_dir, tmp_path / "tokenizer")
    before = checksums(tokenizer_copy)
    with pytest.raises(UserError, match="holds another tokenizer.*--overwrite=true"):
        run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_copy}", "--vocab_size=40"])
    assert checksums(tokenizer_copy) == before
    run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_copy}", "--vocab_size=40",
                               "--overwrite=true"])
    assert checksums(tokenizer_copy) != before


def test_fingerprint_is_the_same_from_the_file_and_from_transformers(tokenizer_dir, tmp_path):
    assert tokenizer_fingerprint(tokenizer_dir) == vocabulary_fingerprint(load_tokenizer(tokenizer_dir).get_vocab())
    other = swapped_tokenizer(tokenizer_dir, tmp_path / "x")
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer_dir)


# ---------------------------------------------------------------- NaN and resuming

def test_nan_on_a_save_step_saves_nothing_and_a_lower_rate_recovers(corpus_file, tokenizer_dir, tmp_path, capsys):
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=2", "--eval_steps=2")
    good = checksums(tmp_path / "checkpoint-2")
    # every step is a save step: the first one after the blow-up must not be saved
    with pytest.raises(UserError, match="NaN or infinite.*Lower LEARNING_RATE"):
        train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=8", "--eval_steps=1", "--logging_steps=1",
              "--learning_rate=1e30", "--max_grad_norm=1e30")
    assert [p.name for p in training.checkpoint_folders(tmp_path)] == ["checkpoint-2"]
    assert checksums(tmp_path / "checkpoint-2") == good
    capsys.readouterr()
    # the advised re-run: the new, lower rate applies to the resumed run (not the checkpoint's)
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=6", "--eval_steps=2", "--logging_steps=1",
          "--learning_rate=0.001")
    out = capsys.readouterr().out
    assert "resuming from" in out and "with LEARNING_RATE now 0.001 (checkpoint had 0.01)" in out
    assert "settings that differ from the checkpoint's" in out and "MAX_STEPS 2 -> 6" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    rates = [row["learning_rate"] for row in metrics["log_history"] if "loss" in row and row["step"] > 2]
    assert len(rates) == 4 and all(0 <= rate <= 0.001 for rate in rates)
    assert metrics["steps"] == 6 and metrics["valid_loss"] < 10


def test_guard_refuses_to_save_non_finite_weights_or_losses():
    guard = training.make_guard_callback()
    model = torch.nn.Linear(2, 2)
    state, control = TrainerState(global_step=3), TrainerControl(should_save=True)
    guard.on_step_end(None, state, control, model=model)
    assert control.should_save and guard.bad_loss_step is None  # finite weights: saved
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    guard.on_step_end(None, state, control, model=model)
    assert not control.should_save and control.should_training_stop and guard.bad_loss_step == 3
    control = TrainerControl(should_save=True, should_evaluate=True)
    guard.on_log(None, TrainerState(global_step=4), control, logs={"loss": float("inf")})
    assert not control.should_save and not control.should_evaluate and guard.bad_loss_step == 4


def test_half_written_checkpoint_is_set_aside_and_the_one_before_resumed(corpus_file, tokenizer_dir, tmp_path, capsys):
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--eval_steps=2")
    weights = tmp_path / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # killed during the save
    capsys.readouterr()
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=6", "--eval_steps=2")
    captured = capsys.readouterr()
    assert "checkpoint-4 cannot be resumed (a file is cut short" in captured.err and f"resuming from {tmp_path / 'checkpoint-2'}" in captured.out
    assert (tmp_path / "incomplete-checkpoint-4").is_dir()
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 6


# ---------------------------------------------------------------- settings, outputs, files

@pytest.mark.parametrize("module, argv, message", [
    (train_model, ["--batch_size=0"], "BATCH_SIZE must be at least 1"),
    (train_model, ["--n_embd=30", "--n_head=4"], "N_EMBD \\(30\\) must be a multiple of N_HEAD \\(4\\)"),
    (train_model, ["--num_epochs=0"], "NUM_EPOCHS must be above 0"),
    (train_model, ["--max_steps=-1"], "MAX_STEPS must be at least 0"),
    (train_model, ["--context_length=1"], "CONTEXT_LENGTH must be at least 2"),
    (train_model, ["--dropout=1"], "DROPOUT must lie in \\[0, 1\\)"),
    (train_model, ["--learning_rate=0"], "LEARNING_RATE must be above 0"),
    (train_model, ["--learning_rate=inf"], "--learning_rate takes a finite number"),
    (train_tokenizer, ["--held_out=1"], "HELD_OUT must lie in"),
    (train_tokenizer, ["--max_stories=-2"], "MAX_STORIES must be at least 0"),
    (generate, ["--max_new_tokens=0"], "MAX_NEW_TOKENS must be at least 1"),
    (generate, ["--top_k=-3"], "TOP_K must be at least 0"),
    (generate, ["--top_p=1.5"], "TOP_P must lie in \\(0, 1\\]"),
    (generate, ["--temperature=-1"], "TEMPERATURE must lie in \\[0.01, 100\\]"),
    (pilish_generate, ["--repetition_penalty=0"], "REPETITION_PENALTY must be above 0"),
    (pilish_generate, ["--num_digits=10000000"], "NUM_DIGITS is at most 100,000"),
    (pilish_generate, ["--decoding=sample", "--temperature=0"], "TEMPERATURE must be above 0"),
    (pilish_generate, ["--num_samples=0"], "NUM_SAMPLES must lie in \\[1, 1000\\]"),
])
def test_bad_values_are_one_line_errors_before_any_work(module, argv, message, tmp_path):
    folder = tmp_path / "out"
    where = {train_model: ["--model_dir", "--tokenizer_dir"], train_tokenizer: ["--tokenizer_dir"]}.get(
        module, ["--model_dir"])
    with pytest.raises(UserError, match=message):
        run_main(module, [f"{name}={folder}" for name in where] + ["--dataset=/nonexistent.txt"] * (
            module in (train_model, train_tokenizer)) + argv)
    assert not folder.exists()  # refused before anything was read or written


def test_bad_value_on_the_command_line_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "train_model.py", "--n_embd=30", "--n_head=4"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "N_HEAD" in result.stderr


def test_unwritable_outputs_are_found_before_the_work(corpus_file, tokenizer_dir, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    with pytest.raises(UserError, match="TOKENIZER_DIR=.* is a file, not a folder"):
        run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={a_file}"])
    with pytest.raises(UserError, match="MODEL_DIR=.* is a file, not a folder"):
        train(corpus_file, tokenizer_dir, a_file, "--max_steps=2")
    with pytest.raises(UserError, match="cannot write MODEL_DIR"):
        train(corpus_file, tokenizer_dir, a_file / "model", "--max_steps=2")
    assert a_file.read_text() == "keep me"
    for output, message in [(tmp_path / "missing" / "out.txt", "does not exist"), (tmp_path, "is a folder")]:
        with pytest.raises(UserError, match=f"OUTPUT_FILE=.*{message}"):
            run_main(pilish_generate, [f"--model_dir={tmp_path / 'no model'}", f"--output_file={output}"])


def test_text_output_never_replaces_a_model_or_tokenizer_file(model_dir, tokenizer_dir, tmp_path):
    folder = copy_model(model_dir, tmp_path / "model")
    before = checksums(folder)
    for target in (folder / "model.safetensors", folder / "tokenizer.json", folder / "metrics.json",
                   folder / "model-00001-of-00002.safetensors", tokenizer_dir / "tokenizer.json"):
        with pytest.raises(UserError, match="OUTPUT_FILE=.*would replace a file of the model or tokenizer"):
            run_main(pilish_generate, [f"--model_dir={folder}", f"--output_file={target}", "--num_digits=5"])
    assert checksums(folder) == before
    run_main(pilish_generate, [f"--model_dir={folder}", f"--output_file={folder / 'pilish.txt'}", "--num_digits=5"])
    assert (folder / "pilish.txt").read_text().count("\n") == 1  # a new file beside the model is fine


def test_two_runs_on_one_folder_the_second_is_refused(corpus_file, tokenizer_dir, tmp_path):
    """The lock of a run in progress (here: a real process that holds it) stops a second run at once."""
    from lmkit.files import LOCK
    model_dir, tokenizer_copy = tmp_path / "model", tmp_path / "tokenizer"
    model_dir.mkdir()
    tokenizer_copy.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for folder in (model_dir, tokenizer_copy):
            (folder / LOCK).write_text(json.dumps({"pid": holder.pid, "host": __import__("socket").gethostname(),
                                                   "started": "now"}))
        with pytest.raises(UserError, match=f"MODEL_DIR={model_dir} is in use by another run \\(pid {holder.pid}"):
            train(corpus_file, tokenizer_dir, model_dir, "--max_steps=2")
        with pytest.raises(UserError, match=f"TOKENIZER_DIR={tokenizer_copy} is in use .*pid {holder.pid}"):
            run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_copy}"])
        assert sorted(p.name for p in model_dir.iterdir()) == [LOCK] == sorted(p.name for p in tokenizer_copy.iterdir())
    finally:
        holder.kill()
        holder.wait()
    train(corpus_file, tokenizer_dir, model_dir, "--max_steps=2", "--eval_steps=2")  # its run gone: taken over
    assert (model_dir / "model.safetensors").is_file() and not (model_dir / LOCK).exists()


def test_overwrite_moves_nothing_until_the_inputs_load_and_keeps_the_old_until_a_save(corpus_file, tokenizer_dir,
                                                                                       tmp_path, capsys):
    model_dir = tmp_path / "model"
    train(corpus_file, tokenizer_dir, model_dir, "--max_steps=2", "--eval_steps=2")
    before = checksums(model_dir)
    with pytest.raises(UserError, match="no such file"):  # a typo in the data path: nothing touched
        train(tmp_path / "typo.txt", tokenizer_dir, model_dir, "--max_steps=2", "--n_embd=16", "--overwrite=true")
    assert checksums(model_dir) == before
    train(corpus_file, tokenizer_dir, model_dir, "--max_steps=4", "--eval_steps=2", "--n_embd=16", "--overwrite=true")
    out = capsys.readouterr().out
    assert "--overwrite: the old checkpoints wait in" in out and "until this run saves its first one" in out
    assert not list(model_dir.glob("replaced-*"))  # gone once the new run had saved a checkpoint
    assert sorted(p.name for p in model_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert json.loads((model_dir / "config.json").read_text())["n_embd"] == 16


def test_corrupt_model_files_name_the_file(model_dir, tmp_path):
    for name, garbage in [("config.json", b"{not json"), ("model.safetensors", None), ("tokenizer.json", b"\x00\x01")]:
        folder = copy_model(model_dir, tmp_path / name)
        path = folder / name
        path.write_bytes(garbage if garbage is not None else path.read_bytes()[:5000])
        with pytest.raises(UserError, match=f"{name} is (corrupt|not a readable)"):
            run_main(generate, [f"--model_dir={folder}", "--max_new_tokens=2"])


def test_binary_and_non_utf8_data_name_the_file(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("the café was open\n\nthe end\n".encode("latin-1"))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a"\n')
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text('{"text": 1}\n')
    for path, message in [(latin, "is not UTF-8 text"), (binary, "is a binary file"), (broken, "cannot read"),
                          (numbers, "holds int64, not strings")]:
        with pytest.raises(UserError, match=message) as error:
            run_main(train_tokenizer, [f"--dataset={path}", f"--tokenizer_dir={tmp_path / 'tok'}"])
        assert path.name in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UserError, match="latin.txt is not UTF-8 text"):
        run_main(pilish_generate, [f"--check_file={latin}"])


def test_check_file_refuses_a_binary_file(tmp_path):
    path = tmp_path / "pilish.txt"
    path.write_bytes(b"how i need\x00 a drink")
    with pytest.raises(UserError, match="pilish.txt is a binary file"):
        run_main(pilish_generate, [f"--check_file={path}"])


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    def main(config):
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as exit_:
        run_script(main, vars(generate), [])
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def ctrl_c_as_on_a_terminal():
    """In the child: Ctrl-C's default action. A suite started in the background (`cmd &`, some CI runners)
    hands its children SIGINT ignored, and Python keeps it so: the test would then fail for no bug."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_writing_pilish_ends_in_one_line(model_dir):
    process = subprocess.Popen([sys.executable, "pilish_generate.py", f"--model_dir={model_dir}", "--num_digits=3000",
                                "--decoding=sample"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=ctrl_c_as_on_a_terminal)
    seen = b""
    while b"writing Pilish" not in seen:  # the progress bar: the model is loaded and writing
        chunk = process.stderr.read1(4096)
        assert chunk, seen.decode()[-2000:]
        seen += chunk
    process.send_signal(signal.SIGINT)
    error = (seen + process.stderr.read()).decode()
    assert process.wait(timeout=60) == 130
    assert "Traceback" not in error and error.rstrip().endswith("interrupted")
