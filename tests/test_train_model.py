"""train_model.py: training the tiny model end to end, what it records and prints, resuming, NaN,
several processes and Ctrl-C. Refused runs that would lose a model are in test_guards.py."""

import json
import re
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

import corpus
import train_model
from conftest import ROOT, TINY_MODEL, run_main, train
from lmkit import training
from lmkit.data import load_stories
from lmkit.folders import pick_device
from lmkit.settings import UserError


def test_loss_falls_and_run_is_recorded(model_dir):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    losses = [row["loss"] for row in metrics["log_history"] if "loss" in row]
    evals = [row["eval_loss"] for row in metrics["log_history"] if "eval_loss" in row]
    assert losses[-1] < losses[0] - 1.0
    assert len(evals) >= 3 and evals[-1] < evals[0]
    assert metrics["steps"] == 60 and metrics["tokens_seen"] == 60 * 8 * 32
    assert metrics["tokens_per_second"] > 0 and metrics["device"] == f"{pick_device()} x 1"
    assert metrics["peak_memory_of"] in ("GPU memory allocated", "resident memory")
    if metrics["peak_memory_of"] == "resident memory":  # in bytes: a process that trained with torch holds
        # far over 64 MiB and less than the machine; KiB read as bytes (1024x too small) fails either way
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        assert 64 * 2**20 < metrics["peak_memory_bytes"] <= physical
    else:
        assert metrics["peak_memory_bytes"] > 0
    assert metrics["parameters"] > metrics["non_embedding_parameters"] > 0
    assert metrics["valid_loss"] == evals[-1] and metrics["valid_perplexity"] == pytest.approx(math.exp(evals[-1]))
    assert metrics["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=0.2)  # the mean over the run
    assert (model_dir / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_during_training_is_bounded_and_the_last_is_whole(corpus_file, tokenizer_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    train(corpus_file, tokenizer_dir, model_dir, "--max_steps=4", "--eval_steps=2", "--eval_blocks=3")
    out = capsys.readouterr().out
    blocks = int(re.search(r"and ([\d,]+) validation blocks", out).group(1).replace(",", ""))
    assert f"evaluation: 3 of the {blocks:,} validation blocks at each checkpoint, all of them at the end" in out
    history = json.loads((model_dir / "metrics.json").read_text())["log_history"]
    evals = [row for row in history if "eval_loss" in row]
    assert len(evals) == 3  # steps 2 and 4 on 3 blocks, then the whole set, all with the step-4 weights last
    assert evals[1]["step"] == evals[2]["step"] == 4 and evals[1]["eval_loss"] != evals[2]["eval_loss"]
    assert json.loads((model_dir / "metrics.json").read_text())["valid_loss"] == evals[2]["eval_loss"]
    assert out.rstrip().endswith(f"next: python generate.py --model_dir={model_dir}")


def test_saved_folder_loads_through_the_auto_classes_and_pipeline(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.vocab_size == len(tokenizer) and model.config.use_cache is True
    assert model.config.eos_token_id == tokenizer.eos_token_id and model.config.pad_token_id == tokenizer.pad_token_id
    generator = pipeline("text-generation", model=str(model_dir))
    text = generator("once upon a time", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("once upon a time") and len(text) > len("once upon a time")


def test_fused_and_stock_loss_train_alike(corpus_file, tokenizer_dir, tmp_path, capsys):
    losses = {}
    for fused in ("true", "false"):
        train(corpus_file, tokenizer_dir, tmp_path / fused, "--max_steps=3", "--eval_steps=3", "--logging_steps=1",
              f"--fused_loss={fused}", "--loss_chunk_size=20")  # 8 x 32 tokens: chunks that do not divide them
        metrics = json.loads((tmp_path / fused / "metrics.json").read_text())
        losses[fused] = [row["loss"] for row in metrics["log_history"] if "loss" in row] + [metrics["valid_loss"]]
    assert "peak resident memory" in capsys.readouterr().out or pick_device() == "cuda"
    # same seed, same batches: rounding apart, the same losses at every step and in evaluation
    tolerance = 1e-4 if pick_device() == "cpu" else 3e-2  # fp32 on a CPU; bf16 matmuls on a GPU
    assert losses["true"] == pytest.approx(losses["false"], rel=tolerance) and len(losses["true"]) == 4
    assert "forward" not in json.loads((tmp_path / "true" / "config.json").read_text())


def logged_steps(monkeypatch):
    """The global step at each training-loss log of the Trainer, as a list that fills while it runs."""
    steps, log = [], transformers.Trainer.log

    def recording_log(self, logs, *args, **kwargs):
        if "loss" in logs:
            steps.append(self.state.global_step)
        return log(self, logs, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "log", recording_log)
    return steps


def loss_rows(checkpoint):
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [row for row in state["log_history"] if "loss" in row]


def test_second_run_resumes_from_the_checkpoint(corpus_file, tokenizer_dir, tmp_path, capsys, monkeypatch):
    steps = logged_steps(monkeypatch)
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--eval_steps=2", "--logging_steps=1")
    assert steps == [1, 2, 3, 4]
    first_run = loss_rows(tmp_path / "checkpoint-4")
    capsys.readouterr()
    steps.clear()
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=6", "--eval_steps=2", "--logging_steps=1")
    out = capsys.readouterr().out
    assert f"resuming from {tmp_path / 'checkpoint-4'}" in out
    assert steps == [5, 6]  # only the new steps ran: a fresh 6-step run would log 1-6
    rows = loss_rows(tmp_path / "checkpoint-6")
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    # steps 1-4 are the first run's, learning rate and all (a fresh 6-step run has another schedule)
    assert rows[:4] == first_run
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 6


def test_valid_dataset_is_the_set_evaluated(corpus_file, tokenizer_dir, tmp_path, capsys):
    valid_file = corpus.write_txt(tmp_path / "valid.txt", corpus.stories(30, seed=7))
    model_dir = tmp_path / "model"
    train(corpus_file, tokenizer_dir, model_dir, f"--valid_dataset={valid_file}", "--max_steps=2", "--eval_steps=2")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    train_blocks = training.tokenize_and_pack(load_stories(str(corpus_file)), tokenizer, 32, None)
    valid_blocks = training.tokenize_and_pack(load_stories(str(valid_file)), tokenizer, 32, None)
    # all of DATASET trains (nothing held out of it) and VALID_DATASET's blocks are evaluated
    assert (f"data: {len(train_blocks):,} training blocks and {len(valid_blocks):,} validation blocks"
            in capsys.readouterr().out)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        losses = [model(input_ids=valid_blocks[i:i + 8]["input_ids"], labels=valid_blocks[i:i + 8]["input_ids"]).loss
                  for i in range(0, len(valid_blocks), 8)]
    sizes = [len(valid_blocks[i:i + 8]["input_ids"]) for i in range(0, len(valid_blocks), 8)]
    expected = sum(float(loss) * size for loss, size in zip(losses, sizes)) / sum(sizes)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["valid_loss"] == pytest.approx(expected, rel=1e-4)


def test_every_setting_reaches_the_trainer_and_the_model(corpus_file, tokenizer_dir, tmp_path, monkeypatch):
    seen = {}

    class Captured(Exception):
        pass

    class FakeTrainer:
        def __init__(self, model, args, train_dataset, eval_dataset, **kwargs):
            seen.update(model=model, args=args, train=train_dataset, valid=eval_dataset)
            raise Captured

    load_splits, pack = training.load_splits, training.tokenize_and_pack

    def recording_load_splits(*args):
        seen["splits"] = args
        return load_splits(*args)

    def recording_pack(dataset, tokenizer, context_length, num_proc):
        seen["num_proc"] = num_proc
        return pack(dataset, tokenizer, context_length, num_proc)

    monkeypatch.setattr(transformers, "Trainer", FakeTrainer)
    monkeypatch.setattr(training, "load_splits", recording_load_splits)
    monkeypatch.setattr(training, "tokenize_and_pack", recording_pack)
    with pytest.raises(Captured):
        run_main(train_model, [
            f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={tmp_path}",
            "--context_length=24", "--n_layer=3", "--n_head=4", "--n_embd=40", "--dropout=0.15",
            "--batch_size=5", "--gradient_accumulation=3", "--learning_rate=0.0123", "--warmup=0.07",
            "--weight_decay=0.031", "--max_grad_norm=0.7", "--num_epochs=2.5", "--max_steps=17",
            "--eval_steps=6", "--save_total_limit=2", "--logging_steps=4", "--compile=true", "--num_proc=1",
            "--dataloader_workers=2", "--seed=123", "--valid_fraction=0.25", "--eval_blocks=7", "--threads=2"])
    args, config = seen["args"], seen["model"].config
    assert (config.n_positions, config.n_layer, config.n_head, config.n_embd) == (24, 3, 4, 40)
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.15
    assert config.vocab_size == len(AutoTokenizer.from_pretrained(tokenizer_dir))
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size, args.gradient_accumulation_steps) == (5, 5, 3)
    assert (args.learning_rate, args.warmup_steps, args.weight_decay, args.max_grad_norm) == (0.0123, 0.07, 0.031, 0.7)
    assert (args.num_train_epochs, args.max_steps, args.eval_steps, args.save_steps) == (2.5, 17, 6, 6)
    assert (args.save_total_limit, args.logging_steps, args.seed, args.output_dir) == (2, 4, 123, str(tmp_path))
    assert args.torch_compile is True and args.dataloader_num_workers == 2
    assert seen["splits"] == (str(corpus_file), "", 0.25, 123) and seen["num_proc"] == 1
    assert len(seen["train"][0]["input_ids"]) == 24
    assert len(seen["valid"]) < len(seen["train"]) / 2  # a quarter of the stories, held out
    assert len(seen["valid"]) == 7 and torch.get_num_threads() == 2  # evaluated during training: EVAL_BLOCKS
    torch.set_num_threads(1)
    seen.clear()
    with pytest.raises(Captured):  # the defaults: no compiling; loader processes only where a GPU waits
        run_main(train_model, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
                               f"--model_dir={tmp_path}", *TINY_MODEL])
    args = seen["args"]
    assert args.torch_compile is False and args.max_steps == -1 and args.num_train_epochs == 1.0
    assert args.dataloader_num_workers == (4 if pick_device() == "cuda" else 0)


def test_incompatible_model_folder_is_a_clear_error(corpus_file, tokenizer_dir, tmp_path):
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=2", "--eval_steps=2")
    with pytest.raises(UserError, match="n_embd 32 \\(now 48\\)"):
        train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--n_embd=48")


def test_nan_loss_stops_without_saving(corpus_file, tokenizer_dir, tmp_path):
    with pytest.raises(UserError, match="NaN or infinite"):
        train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=40", "--learning_rate=1e30",
              "--max_grad_norm=1e30", "--logging_steps=1", "--eval_steps=20")
    assert not (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("checkpoint-*"))


def test_missing_tokenizer_says_which_script_to_run(corpus_file, tmp_path):
    with pytest.raises(UserError, match="run train_tokenizer.py first"):
        train(corpus_file, tmp_path / "nothing", tmp_path / "model", "--max_steps=1")


def test_two_process_torchrun(corpus_file, tokenizer_dir, tmp_path):
    # two GPUs if there are two, else two CPU processes (one GPU cannot hold two ranks' devices)
    device = "cuda" if torch.cuda.device_count() >= 2 else "cpu"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({} if device == "cuda" else {"CUDA_VISIBLE_DEVICES": ""})}
    # --standalone: the rendezvous binds a port the OS picks as free (no fixed port that another run
    # on the same machine may hold) and the ranks meet through the agent's own store
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "train_model.py", f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
         f"--model_dir={tmp_path}", *TINY_MODEL, "--max_steps=4", "--eval_steps=2"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"device: {device} x 2" in result.stdout
    assert result.stdout.count("saved model, tokenizer") == 1  # only rank 0 saves and reports
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.n_embd == 32
    assert json.loads((tmp_path / "metrics.json").read_text())["tokens_seen"] == 4 * 2 * 8 * 32


def test_ctrl_c_saves_a_checkpoint_and_the_next_run_resumes(corpus_file, tokenizer_dir, tmp_path):
    command = [sys.executable, "train_model.py", f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
               f"--model_dir={tmp_path}", *TINY_MODEL, "--max_steps=100000", "--eval_steps=100000"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               # Ctrl-C's default action, even when the suite runs in the background (`cmd &`),
                               # whose children get SIGINT ignored: the test would fail for no bug
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stdout:  # wait until training has started
        if line.startswith("device:"):
            break
    time.sleep(4)
    process.send_signal(signal.SIGINT)
    output = process.stdout.read()
    assert process.wait(timeout=120) == 130, output[-2000:]  # interrupted: `&&` must not go on
    assert "Ctrl-C: saving a checkpoint" in output and "run the same command to resume" in output
    checkpoints = list(tmp_path.glob("checkpoint-*"))
    assert len(checkpoints) == 1
    step = int(checkpoints[0].name.split("-")[1])
    assert 0 < step < 100000 and (checkpoints[0] / "optimizer.pt").is_file()
    assert not (tmp_path / "model.safetensors").exists()  # a checkpoint, not a finished model


def test_the_saved_config_knows_the_special_tokens(model_dir):
    """generate() and pipeline() read padding and the end of a story from config.json."""
    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert (config["pad_token_id"], config["eos_token_id"], config["bos_token_id"]) == (
        tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.eos_token_id)


def test_the_device_line_has_no_empty_thread_part_where_threads_are_not_set(corpus_file, tokenizer_dir, tmp_path,
                                                                         monkeypatch, capsys):
    """On a GPU, use_cpu_threads says nothing; the log line then carries no "; ;"."""
    class Captured(Exception):
        pass

    def stop(*args, **kwargs):
        raise Captured

    monkeypatch.setattr(train_model, "use_cpu_threads", lambda *args: "")  # what a run on a GPU gets
    monkeypatch.setattr(transformers, "Trainer", stop)
    with pytest.raises(Captured):
        run_main(train_model, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={tmp_path}",
                               *TINY_MODEL])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("device:"))
    assert re.fullmatch(r"device: \w+ x 1, \w+; [\d,]+ steps of [\d,]+ tokens", line), line


def test_the_model_line_notes_a_vocabulary_below_the_default_30k_only(tokenizer_dir, corpus_file, tmp_path,
                                                                      monkeypatch, capsys):
    """The tiny tokenizer's vocabulary is smaller than the default, and the log says so; one of 30,000 words
    (the same tokenizer with words added) is the default size: no note."""
    from lmkit.folders import load_tokenizer
    from lmkit.settings import configure

    class Captured(Exception):
        pass

    def stop(*args, **kwargs):
        raise Captured

    monkeypatch.setattr(transformers, "Trainer", stop)
    note = " (smaller than the default 30k, so the model is too)"
    for words in (None, 30000):
        tokenizer = load_tokenizer(tokenizer_dir)
        if words:
            tokenizer.add_tokens([f"zqxword{i}" for i in range(words - len(tokenizer))])
            assert len(tokenizer) == words
        config = configure(vars(train_model), [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
                                               f"--model_dir={tmp_path / str(words)}", *TINY_MODEL])
        with pytest.raises(Captured):
            train_model.train(config, tokenizer)
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model:"))
        assert line.endswith(f"; vocabulary {len(tokenizer):,}" + ("" if words else note)), line


@pytest.mark.parametrize("stories", [0, 1])
def test_ngrams_pt_is_saved_and_named_from_one_story_on(corpus_file, tokenizer_dir, tmp_path, capsys, stories):
    """NGRAM_STORIES=1 counts one story: ngrams.pt is written and the last line says so; 0 writes none."""
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=1", "--eval_steps=1", f"--ngram_stories={stories}")
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("saved model"))
    assert ("and ngrams.pt to" in line) is bool(stories)
    assert (tmp_path / "ngrams.pt").is_file() is bool(stories)


@pytest.mark.parametrize("why, watched", [
    ("automatic: 1.0 cores idle (THREADS=N to choose)", True),
    ("automatic: 0.0 cores idle, so threads that sleep while they wait (THREADS=N to choose)", False),
    ("THREADS=2", False)])
def test_the_thread_choice_is_made_before_torch_and_watched_only_when_spinning(corpus_file, tokenizer_dir, tmp_path,
                                                                              monkeypatch, why, watched):
    """main() chooses the threads before the tokenizer (and torch) loads, for training, and train() applies
    that choice; the watch that lowers the threads under load is added for automatic spinning threads only
    (threads that sleep keep their number: beside busy programs two get more done than one)."""
    class Captured(Exception):
        pass

    seen, order, load_tokenizer = {}, [], train_model.load_tokenizer

    def choose(setting, **kwargs):
        seen["chosen"] = (setting, kwargs)
        order.append("threads")
        return 2, why

    def load(folder):
        order.append("tokenizer")
        return load_tokenizer(folder)

    def stop(*args, **kwargs):
        seen["callbacks"] = [type(callback).__name__ for callback in kwargs["callbacks"]]
        raise Captured

    monkeypatch.setattr(train_model, "cpu_threads", choose)
    monkeypatch.setattr(train_model, "load_tokenizer", load)
    monkeypatch.setattr(train_model, "use_cpu_threads",
                        lambda setting, device, chosen: seen.setdefault("applied", chosen) and f"CPU threads: 2 ({why})")
    monkeypatch.setattr(transformers, "Trainer", stop)
    with pytest.raises(Captured):
        run_main(train_model, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={tmp_path}",
                               "--threads=1", *TINY_MODEL])
    assert order[:2] == ["threads", "tokenizer"]
    assert seen["chosen"] == (1, {"training": True}) and seen["applied"] == (2, why)
    assert ("ThreadWatch" in seen["callbacks"]) is watched
