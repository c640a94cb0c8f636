"""Train a small GPT-2 from scratch on TinyStories with the word-level tokenizer.

    python train_model.py                                        # hub data set, one epoch
    python train_model.py --dataset=TinyStories-train.txt --valid_dataset=TinyStories-valid.txt
    python train_model.py --max_steps=300 --batch_size=32        # a quick run
    torchrun --nproc_per_node=4 train_model.py                   # 4 GPUs on one machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST --master_port=29500 train_model.py

Re-running the same command resumes from the last checkpoint in MODEL_DIR; Ctrl-C saves one
and stops. MODEL_DIR ends up with the model, the tokenizer, metrics.json and loss_curve.png,
loadable with AutoModelForCausalLM / AutoTokenizer / pipeline("text-generation").
"""

DATASET = "roneneldan/TinyStories"  # hub name, or a local .txt/.json/.jsonl/.parquet file or folder
VALID_DATASET = ""  # validation data; "" = the hub set's validation split, or VALID_FRACTION of a local set
VALID_FRACTION = 0.02  # share of a local DATASET held out for validation when VALID_DATASET is ""
TOKENIZER_DIR = "tokenizer"  # from train_tokenizer.py
MODEL_DIR = "model"  # checkpoints, final model, tokenizer, metrics.json, loss_curve.png
CONTEXT_LENGTH = 256  # tokens per training block (and the model's longest context)
N_LAYER = 4  # transformer blocks
N_HEAD = 4  # attention heads per block
N_EMBD = 128  # width; with a 30k vocabulary the embedding holds most of the ~5M parameters
DROPOUT = 0.0  # one pass over a large data set needs none; raise it for a small local file
BATCH_SIZE = 64  # blocks per step on each device
GRADIENT_ACCUMULATION = 1  # steps whose gradients are summed before each update
LEARNING_RATE = 2e-3  # peak learning rate, after warm-up
WARMUP = 0.02  # share of the steps spent warming up the learning rate
WEIGHT_DECAY = 0.1  # AdamW weight decay
MAX_GRAD_NORM = 1.0  # gradient clipping
NUM_EPOCHS = 1.0  # passes over the training data
MAX_STEPS = 0  # stop after this many steps instead (0 = use NUM_EPOCHS)
EVAL_STEPS = 0  # evaluate and checkpoint every N steps (0 = five times per run)
SAVE_TOTAL_LIMIT = 3  # checkpoints kept in MODEL_DIR
LOGGING_STEPS = 0  # log the training loss every N steps (0 = about 50 times per run)
COMPILE = False  # torch.compile the model (faster on a GPU after a minute of compiling)
NUM_PROC = 0  # processes for tokenizing (0 = one per CPU core for large data, else 1)
DATALOADER_WORKERS = -1  # processes reading batches ahead (-1 = 4 on a GPU, so it never waits; 0 on a CPU)
SEED = 42  # same seed, same data order and initial weights

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import training
from common import UserError, load_tokenizer, pick_device, run_script


def main(config):
    from transformers import Trainer, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    tokenizer = load_tokenizer(config.TOKENIZER_DIR)
    set_seed(config.SEED)
    device = pick_device()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    is_main = int(os.environ.get("RANK", "0")) == 0
    log = print if is_main else (lambda *args, **kwargs: None)
    workers = config.DATALOADER_WORKERS if config.DATALOADER_WORKERS >= 0 else (4 if device == "cuda" else 0)
    args = training.training_arguments(
        config.MODEL_DIR, device=device, batch_size=config.BATCH_SIZE, learning_rate=config.LEARNING_RATE,
        seed=config.SEED, max_steps=config.MAX_STEPS, num_epochs=config.NUM_EPOCHS,
        gradient_accumulation=config.GRADIENT_ACCUMULATION, warmup=config.WARMUP,
        weight_decay=config.WEIGHT_DECAY, max_grad_norm=config.MAX_GRAD_NORM, eval_steps=config.EVAL_STEPS,
        logging_steps=config.LOGGING_STEPS, save_total_limit=config.SAVE_TOTAL_LIMIT, compile=config.COMPILE,
        workers=workers, world_size=world_size)

    with args.main_process_first(desc="tokenizing"):  # other ranks then read the cache
        try:
            train_stories, valid_stories = training.load_splits(
                config.DATASET, config.VALID_DATASET, config.VALID_FRACTION, config.SEED)
        except ValueError as error:
            raise UserError(str(error)) from None
        num_proc = config.NUM_PROC or (min(os.cpu_count() or 1, 8) if len(train_stories) > 100_000 else None)
        started = time.perf_counter()
        train_blocks = training.tokenize_and_pack(train_stories, tokenizer, config.CONTEXT_LENGTH, num_proc)
        valid_blocks = training.tokenize_and_pack(valid_stories, tokenizer, config.CONTEXT_LENGTH, num_proc)
        tokenize_seconds = time.perf_counter() - started
    if len(train_blocks) == 0 or len(valid_blocks) == 0:
        which = "training" if len(train_blocks) == 0 else "validation"
        raise UserError(f"the {which} data holds fewer than CONTEXT_LENGTH={config.CONTEXT_LENGTH} tokens: "
                        f"give more text or a smaller CONTEXT_LENGTH")
    block_tokens = config.CONTEXT_LENGTH * config.BATCH_SIZE * config.GRADIENT_ACCUMULATION * world_size
    steps_per_epoch = max(1, len(train_blocks) // (config.BATCH_SIZE * config.GRADIENT_ACCUMULATION * world_size))
    total_steps = config.MAX_STEPS or math.ceil(steps_per_epoch * config.NUM_EPOCHS)

    model = training.build_model(
        len(tokenizer), context_length=config.CONTEXT_LENGTH, n_embd=config.N_EMBD, n_layer=config.N_LAYER,
        n_head=config.N_HEAD, dropout=config.DROPOUT, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    total, non_embedding = training.count_parameters(model)
    log(f"data: {len(train_blocks):,} training blocks and {len(valid_blocks):,} validation blocks of "
        f"{config.CONTEXT_LENGTH} tokens (tokenized in {tokenize_seconds:.1f} s)")
    log(f"model: {total / 1e6:.2f}M parameters, {non_embedding / 1e6:.2f}M outside the embeddings; "
        f"vocabulary {len(tokenizer):,}" + ("" if len(tokenizer) >= 30000 else
        " (smaller than the default 30k, so the model is too)"))
    precision = training.precision(device)
    log(f"device: {device} x {world_size}, {precision}; {total_steps:,} steps of {block_tokens:,} tokens")

    checkpoint = get_last_checkpoint(config.MODEL_DIR) if Path(config.MODEL_DIR).is_dir() else None
    if checkpoint:
        try:
            training.check_resumable(checkpoint, model)
        except ValueError as error:
            raise UserError(str(error)) from None
        log(f"resuming from {checkpoint}")

    guard = training.make_guard_callback()
    trainer = Trainer(model=model, args=args, train_dataset=train_blocks, eval_dataset=valid_blocks,
                      data_collator=training.collate_blocks, processing_class=tokenizer, callbacks=[guard])

    def on_interrupt(signum, frame):
        if guard.interrupted:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        guard.interrupted = True
        log("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to quit without saving)")

    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    started = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    wall_seconds = time.perf_counter() - started

    if guard.bad_loss_step is not None:
        raise UserError(f"the training loss became NaN or infinite by step {guard.bad_loss_step}; nothing was "
                        f"saved for it. Lower LEARNING_RATE (now {config.LEARNING_RATE}) and run again: "
                        f"it resumes from the last good checkpoint")
    if guard.interrupted:
        log(f"stopped at step {trainer.state.global_step}; run the same command to resume")
        return

    evaluation = trainer.evaluate()  # every rank takes part; then rank 0 alone writes
    trainer.model.config.use_cache = True  # training switched the KV cache off; generation wants it
    trainer.save_model(config.MODEL_DIR)
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(config.MODEL_DIR)
    steps_this_run = trainer.state.global_step - (int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0)
    metrics = {
        "device": f"{device} x {world_size}", "precision": precision,
        "parameters": total, "non_embedding_parameters": non_embedding,
        "steps": trainer.state.global_step, "tokens_seen": trainer.state.global_step * block_tokens,
        "tokens_per_second": steps_this_run * block_tokens / wall_seconds if wall_seconds else None,
        "wall_seconds": wall_seconds, "tokenize_seconds": tokenize_seconds,
        "train_loss": result.training_loss, "valid_loss": evaluation["eval_loss"],
        "valid_perplexity": math.exp(evaluation["eval_loss"]),
        "log_history": trainer.state.log_history,
    }
    Path(config.MODEL_DIR, "metrics.json").write_text(json.dumps(metrics, indent=1))
    training.plot_loss_curve(trainer.state.log_history, Path(config.MODEL_DIR, "loss_curve.png"))
    log(f"validation loss {evaluation['eval_loss']:.3f} (perplexity {math.exp(evaluation['eval_loss']):.1f}); "
        f"{metrics['tokens_per_second'] or 0:,.0f} tokens/s over {wall_seconds:.0f} s")
    log(f"saved model, tokenizer, metrics.json and loss_curve.png to {config.MODEL_DIR}/ -- "
        f"next: python generate.py --model_dir={config.MODEL_DIR}")


def leave_process_group():
    """Under torchrun: wait for rank 0 to finish writing, then close the process group. A rank that
    exits with the group still open can abort (SIGABRT) at interpreter shutdown, failing the run."""
    if "torch" not in sys.modules:  # --help, or an error before training: nothing to close
        return
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    run_script(main, globals())
    leave_process_group()
