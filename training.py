"""Training pieces behind train_model.py (and bench/): packing the stories into blocks, the GPT-2
model, the Trainer's arguments and callbacks, the loss curve. Functions take plain arguments.
"""

import json
import math
from pathlib import Path

from common import load_stories

# settings that must match for a checkpoint in MODEL_DIR to be resumed
ARCHITECTURE_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")


def load_splits(dataset, valid_dataset="", valid_fraction=0.02, seed=42):
    """(training stories, validation stories): `valid_dataset` if given; else a held-out slice of a
    local `dataset`, or a hub data set's validation split."""
    train = load_stories(dataset, split="train")
    if valid_dataset:
        return train, load_stories(valid_dataset, split="validation")
    if Path(dataset).expanduser().exists():  # a local set: hold out a slice
        if not 0 < valid_fraction < 1:
            raise ValueError("the validation fraction must be between 0 and 1 (or give a validation set)")
        if len(train) < 2:
            raise ValueError(f"{dataset} has too few stories to hold out a validation slice")
        split = train.train_test_split(test_size=valid_fraction, seed=seed)
        return split["train"], split["test"]
    return train, load_stories(dataset, split="validation")


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


def build_model(vocab_size, *, context_length, n_embd, n_layer, n_head, dropout=0.0,
                eos_token_id=None, pad_token_id=None):
    """A fresh GPT2LMHeadModel: `vocab_size` words, the LM head tied to the token embedding."""
    from transformers import GPT2Config, GPT2LMHeadModel
    model_config = GPT2Config(
        vocab_size=vocab_size, n_positions=context_length, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        activation_function="gelu",  # exact GELU: one fused kernel, unlike the tanh approximation
        bos_token_id=eos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
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
        raise ValueError(f"{checkpoint} was trained with other settings: {', '.join(different)}; "
                         f"use another MODEL_DIR or delete that one to start afresh")


def precision(device):
    """The Trainer's mixed precision on `device`: bf16 autocast where the GPU has it, fp16 on older
    GPUs, fp32 on a CPU (where bf16 matrix products are ~100x slower)."""
    if device != "cuda":
        return "fp32"
    import torch
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def training_arguments(output_dir, *, device, batch_size, learning_rate, seed=42, max_steps=0, num_epochs=1.0,
                       gradient_accumulation=1, warmup=0.02, weight_decay=0.1, max_grad_norm=1.0,
                       eval_steps=0, logging_steps=0, save_total_limit=3, compile=False, workers=0,
                       world_size=1, checkpoints=True):
    """The Trainer's arguments for train_model.py's recipe: AdamW (beta2 0.95), warm-up then cosine
    decay, clipping, mixed precision on CUDA (see `precision`).

    `eval_steps` 0 means five evaluations (and checkpoints) per run and `logging_steps` 0 about fifty
    log lines, as shares of the steps that the Trainer works out itself. `checkpoints=False` runs
    without evaluating, saving or logging (for benchmarks).
    """
    from transformers import TrainingArguments
    on_cuda = device == "cuda"
    mixed = precision(device)
    if checkpoints:
        schedule = dict(eval_strategy="steps", save_strategy="steps", logging_strategy="steps",
                        eval_steps=eval_steps or 0.2, save_steps=eval_steps or 0.2,
                        logging_steps=logging_steps or 0.02,
                        save_total_limit=save_total_limit)
    else:
        schedule = dict(eval_strategy="no", save_strategy="no", logging_strategy="no", disable_tqdm=True)
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation,
        learning_rate=learning_rate, weight_decay=weight_decay, adam_beta2=0.95, max_grad_norm=max_grad_norm,
        lr_scheduler_type="cosine", warmup_steps=warmup,
        num_train_epochs=num_epochs, max_steps=max_steps or -1,
        logging_nan_inf_filter=False, prediction_loss_only=True,
        bf16=mixed == "bf16", fp16=mixed == "fp16", tf32=on_cuda or None, torch_compile=compile,
        # on a CPU, loader processes would take cores from the model; on a GPU they keep it fed
        dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0, dataloader_pin_memory=on_cuda,
        ddp_find_unused_parameters=False, ddp_backend="gloo" if world_size > 1 and not on_cuda else None,
        remove_unused_columns=False, report_to="none", seed=seed, use_cpu=device == "cpu", **schedule)


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
            if control.should_save:  # the Trainer logs before it saves: on_log then sees this step's loss
                control.should_log = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                self.bad_loss_step = state.global_step
                control.should_save = False  # never checkpoint broken weights
                control.should_evaluate = False
                control.should_training_stop = True

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            if loss is not None and not math.isfinite(loss):
                self.bad_loss_step = state.global_step
                control.should_save = False
                control.should_training_stop = True

    return Guard()
