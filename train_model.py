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

DATASET = "roneneldan/TinyStories"  # hub name, "sample" (bundled), or a local .txt/.txt.gz/.jsonl/... file or folder
VALID_DATASET = ""  # validation data; "" = a hub set's (or "sample"'s) validation split, or VALID_FRACTION of a local set
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
import time
from pathlib import Path

from common import UserError, load_stories, load_tokenizer, pick_device, run_script

# settings that must match for a checkpoint in MODEL_DIR to be resumed
ARCHITECTURE_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")


def tokenize_and_pack(dataset, tokenizer, context_length, num_proc):
    """Tokenize every story, end each with <|endoftext|> and pack the stream into full blocks.

    As in run_clm.py: no block holds padding, so no compute goes to it. The leftover tokens of each
    batch of 1000 stories are dropped (under 0.5% of the data). `datasets` caches both maps, so a
    second run with the same data and tokenizer skips them.
    """
    eot = tokenizer.eos_token_id

    def tokenize(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [story + [eot] for story in ids]}

    def pack(batch):
        stream = [token for story in batch["input_ids"] for token in story]
        usable = len(stream) - len(stream) % context_length
        return {"input_ids": [stream[i:i + context_length] for i in range(0, usable, context_length)]}

    tokens = dataset.map(tokenize, batched=True, num_proc=num_proc, remove_columns=dataset.column_names,
                         desc="tokenizing")
    blocks = tokens.map(pack, batched=True, num_proc=num_proc, desc=f"packing into blocks of {context_length}")
    return blocks.with_format("torch")


def collate_blocks(rows):
    import torch
    input_ids = torch.stack([row["input_ids"] for row in rows])
    return {"input_ids": input_ids, "labels": input_ids}  # the model shifts labels itself


def build_model(config, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel
    model_config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.CONTEXT_LENGTH, n_embd=config.N_EMBD,
        n_layer=config.N_LAYER, n_head=config.N_HEAD, resid_pdrop=config.DROPOUT,
        embd_pdrop=config.DROPOUT, attn_pdrop=config.DROPOUT,
        activation_function="gelu",  # exact GELU: one fused kernel, unlike the tanh approximation
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model_config._attn_implementation = "sdpa"  # PyTorch's fused scaled-dot-product attention
    model = GPT2LMHeadModel(model_config)
    # the LM head is the token embedding (tied), so checkpoints rightly lack it: tell the Trainer,
    # which otherwise warns about a "missing key" when it resumes
    model._keys_to_ignore_on_save = ["lm_head.weight"]
    model.loss_type = "ForCausalLM"  # GPT2LMHeadModel's name does not say so: without this it warns
    return model


def count_parameters(model):
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    return total, total - embeddings  # the LM head shares the token embedding


def check_resumable(checkpoint, model):
    """A checkpoint from a run with another architecture or tokenizer cannot be resumed."""
    saved = json.loads((Path(checkpoint) / "config.json").read_text())
    wanted = model.config.to_dict()
    different = [f"{key} {saved.get(key)} (now {wanted[key]})" for key in ARCHITECTURE_KEYS
                 if saved.get(key) != wanted[key]]
    if different:
        raise UserError(f"{checkpoint} was trained with other settings: {', '.join(different)}; "
                        f"use another MODEL_DIR or delete that one to start afresh")


def load_splits(config):
    train = load_stories(config.DATASET, split="train")
    if config.VALID_DATASET:
        return train, load_stories(config.VALID_DATASET, split="validation")
    if Path(config.DATASET).expanduser().exists():  # a local set: hold out a slice
        if not 0 < config.VALID_FRACTION < 1:
            raise UserError("VALID_FRACTION must be between 0 and 1 (or set VALID_DATASET)")
        if len(train) < 2:
            raise UserError(f"{config.DATASET} has too few stories to hold out a validation slice")
        split = train.train_test_split(test_size=config.VALID_FRACTION, seed=config.SEED)
        return split["train"], split["test"]
    return train, load_stories(config.DATASET, split="validation")


def plot_loss_curve(log_history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    train = [(row["step"], row["loss"]) for row in log_history if "loss" in row]
    valid = [(row["step"], row["eval_loss"]) for row in log_history if "eval_loss" in row]
    figure, axes = plt.subplots(figsize=(7, 4))
    if train:
        axes.plot(*zip(*train), label="training loss")
    if valid:
        axes.plot(*zip(*valid), "o-", label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats per token)")
    axes.set_title("TinyStories GPT-2")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def make_guard_callback():
    """Stops cleanly on Ctrl-C (after saving a checkpoint) and on a non-finite loss (without saving)."""
    from transformers import TrainerCallback

    class Guard(TrainerCallback):
        interrupted = False
        bad_loss_step = None

        def on_step_end(self, args, state, control, **kwargs):
            if self.interrupted:
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                self.bad_loss_step = state.global_step
                control.should_save = False  # never checkpoint broken weights
                control.should_evaluate = False
                control.should_training_stop = True

    return Guard()


def main(config):
    import torch
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    tokenizer = load_tokenizer(config.TOKENIZER_DIR)
    set_seed(config.SEED)
    device = pick_device()
    on_cuda = device == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    is_main = int(os.environ.get("RANK", "0")) == 0

    log = print if is_main else (lambda *args, **kwargs: None)
    # on a CPU, loader processes would take cores from the model; on a GPU they keep it fed
    workers = config.DATALOADER_WORKERS if config.DATALOADER_WORKERS >= 0 else (4 if on_cuda else 0)
    args = TrainingArguments(
        output_dir=config.MODEL_DIR,
        per_device_train_batch_size=config.BATCH_SIZE,
        per_device_eval_batch_size=config.BATCH_SIZE,
        gradient_accumulation_steps=config.GRADIENT_ACCUMULATION,
        learning_rate=config.LEARNING_RATE, weight_decay=config.WEIGHT_DECAY,
        adam_beta2=0.95, max_grad_norm=config.MAX_GRAD_NORM,
        lr_scheduler_type="cosine", warmup_steps=config.WARMUP,
        num_train_epochs=config.NUM_EPOCHS, max_steps=config.MAX_STEPS or -1,
        eval_strategy="steps", save_strategy="steps", logging_strategy="steps",
        eval_steps=1, save_steps=1, logging_steps=1,  # set once the step count is known
        save_total_limit=config.SAVE_TOTAL_LIMIT, logging_nan_inf_filter=False,
        # bf16 autocast where the GPU has it, fp16 on older GPUs, fp32 on CPU (bf16 is ~100x slower there)
        bf16=on_cuda and torch.cuda.is_bf16_supported(), fp16=on_cuda and not torch.cuda.is_bf16_supported(),
        tf32=on_cuda or None, torch_compile=config.COMPILE,
        dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0, dataloader_pin_memory=on_cuda,
        ddp_find_unused_parameters=False, ddp_backend="gloo" if world_size > 1 and not on_cuda else None,
        remove_unused_columns=False, report_to="none", seed=config.SEED, use_cpu=device == "cpu")

    with args.main_process_first(desc="tokenizing"):  # other ranks then read the cache
        train_stories, valid_stories = load_splits(config)
        num_proc = config.NUM_PROC or (min(os.cpu_count() or 1, 8) if len(train_stories) > 100_000 else None)
        started = time.perf_counter()
        train_blocks = tokenize_and_pack(train_stories, tokenizer, config.CONTEXT_LENGTH, num_proc)
        valid_blocks = tokenize_and_pack(valid_stories, tokenizer, config.CONTEXT_LENGTH, num_proc)
        tokenize_seconds = time.perf_counter() - started
    if len(train_blocks) == 0 or len(valid_blocks) == 0:
        which = "training" if len(train_blocks) == 0 else "validation"
        raise UserError(f"the {which} data holds fewer than CONTEXT_LENGTH={config.CONTEXT_LENGTH} tokens: "
                        f"give more text or a smaller CONTEXT_LENGTH")
    block_tokens = config.CONTEXT_LENGTH * config.BATCH_SIZE * config.GRADIENT_ACCUMULATION * world_size
    steps_per_epoch = max(1, len(train_blocks) // (config.BATCH_SIZE * config.GRADIENT_ACCUMULATION * world_size))
    total_steps = config.MAX_STEPS or math.ceil(steps_per_epoch * config.NUM_EPOCHS)
    args.eval_steps = args.save_steps = config.EVAL_STEPS or max(1, total_steps // 5)
    args.logging_steps = config.LOGGING_STEPS or max(1, min(args.eval_steps, total_steps // 50))

    model = build_model(config, tokenizer)
    total, non_embedding = count_parameters(model)
    log(f"data: {len(train_blocks):,} training blocks and {len(valid_blocks):,} validation blocks of "
        f"{config.CONTEXT_LENGTH} tokens (tokenized in {tokenize_seconds:.1f} s)")
    log(f"model: {total / 1e6:.2f}M parameters, {non_embedding / 1e6:.2f}M outside the embeddings; "
        f"vocabulary {len(tokenizer):,}" + ("" if len(tokenizer) >= 30000 else
        " (smaller than the default 30k, so the model is too)"))
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    log(f"device: {device} x {world_size}, {precision}; {total_steps:,} steps of {block_tokens:,} tokens")

    checkpoint = get_last_checkpoint(config.MODEL_DIR) if Path(config.MODEL_DIR).is_dir() else None
    if checkpoint:
        check_resumable(checkpoint, model)
        log(f"resuming from {checkpoint}")

    guard = make_guard_callback()
    trainer = Trainer(model=model, args=args, train_dataset=train_blocks, eval_dataset=valid_blocks,
                      data_collator=collate_blocks, processing_class=tokenizer, callbacks=[guard])

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
    plot_loss_curve(trainer.state.log_history, Path(config.MODEL_DIR, "loss_curve.png"))
    log(f"validation loss {evaluation['eval_loss']:.3f} (perplexity {math.exp(evaluation['eval_loss']):.1f}); "
        f"{metrics['tokens_per_second'] or 0:,.0f} tokens/s over {wall_seconds:.0f} s")
    log(f"saved model, tokenizer, metrics.json and loss_curve.png to {config.MODEL_DIR}/ -- "
        f"next: python generate.py --model_dir={config.MODEL_DIR}")


if __name__ == "__main__":
    run_script(main, globals())
