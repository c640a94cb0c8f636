import json
import os
import subprocess
import sys

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

import train_model
from common import UserError, load_stories, pick_device
from conftest import ROOT, TINY_MODEL, run_main


def train(corpus_file, tokenizer_dir, model_dir, *extra):
    run_main(train_model, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
                           f"--model_dir={model_dir}", *TINY_MODEL, *extra])


def test_loss_falls_and_run_is_recorded(model_dir):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    losses = [row["loss"] for row in metrics["log_history"] if "loss" in row]
    evals = [row["eval_loss"] for row in metrics["log_history"] if "eval_loss" in row]
    assert losses[-1] < losses[0] - 1.0
    assert len(evals) >= 3 and evals[-1] < evals[0]
    assert metrics["steps"] == 60 and metrics["tokens_seen"] == 60 * 8 * 32
    assert metrics["tokens_per_second"] > 0 and metrics["device"] == f"{pick_device()} x 1"
    assert metrics["peak_memory_bytes"] > 2**20 and metrics["peak_memory_of"] in ("GPU memory allocated",
                                                                                  "resident memory")
    assert metrics["parameters"] > metrics["non_embedding_parameters"] > 0
    assert (model_dir / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_folder_loads_through_the_auto_classes_and_pipeline(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id and model.config.pad_token_id == tokenizer.pad_token_id
    generator = pipeline("text-generation", model=str(model_dir))
    text = generator("once upon a time", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("once upon a time") and len(text) > len("once upon a time")


def test_packing_makes_full_blocks_with_endoftext_between_stories(corpus_file, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    stories = load_stories(str(corpus_file)).select(range(30))
    blocks = train_model.tokenize_and_pack(stories, tokenizer, 16, None)
    stream = [token for story in tokenizer(list(stories["text"]), add_special_tokens=False)["input_ids"]
              for token in story + [tokenizer.eos_token_id]]
    assert all(len(block) == 16 for block in blocks["input_ids"])
    flat = [int(t) for block in blocks["input_ids"] for t in block]
    assert flat == stream[:len(flat)] and len(stream) - len(flat) < 16
    assert tokenizer.pad_token_id not in flat and flat.count(tokenizer.eos_token_id) >= 29


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


def test_second_run_resumes_from_the_checkpoint(corpus_file, tokenizer_dir, tmp_path, capsys):
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=4", "--eval_steps=2", "--logging_steps=1")
    assert (tmp_path / "checkpoint-4").is_dir()
    capsys.readouterr()
    train(corpus_file, tokenizer_dir, tmp_path, "--max_steps=6", "--eval_steps=2", "--logging_steps=1")
    out = capsys.readouterr().out
    assert f"resuming from {tmp_path / 'checkpoint-4'}" in out
    state = json.loads((tmp_path / "checkpoint-6" / "trainer_state.json").read_text())
    steps = [row["step"] for row in state["log_history"] if "loss" in row]
    assert state["global_step"] == 6 and steps == [1, 2, 3, 4, 5, 6]  # continued, not restarted
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 6


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
    # two processes on the CPU (gloo), whatever GPUs the machine has: one GPU cannot take two ranks
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
         "train_model.py", f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
         f"--model_dir={tmp_path}", *TINY_MODEL, "--max_steps=4", "--eval_steps=2"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "device: cpu x 2" in result.stdout
    assert result.stdout.count("saved model, tokenizer") == 1  # only rank 0 saves and reports
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.n_embd == 32
    assert json.loads((tmp_path / "metrics.json").read_text())["tokens_seen"] == 4 * 2 * 8 * 32


def test_ctrl_c_saves_a_checkpoint_and_the_next_run_resumes(corpus_file, tokenizer_dir, tmp_path):
    import signal
    import time
    command = [sys.executable, "train_model.py", f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
               f"--model_dir={tmp_path}", *TINY_MODEL, "--max_steps=100000", "--eval_steps=100000"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in process.stdout:  # wait until training has started
        if line.startswith("device:"):
            break
    time.sleep(4)
    process.send_signal(signal.SIGINT)
    output = process.stdout.read()
    assert process.wait(timeout=120) == 0, output[-2000:]
    assert "Ctrl-C: saving a checkpoint" in output and "run the same command to resume" in output
    checkpoints = list(tmp_path.glob("checkpoint-*"))
    assert len(checkpoints) == 1
    step = int(checkpoints[0].name.split("-")[1])
    assert 0 < step < 100000 and (checkpoints[0] / "optimizer.pt").is_file()
    assert not (tmp_path / "model.safetensors").exists()  # a checkpoint, not a finished model
