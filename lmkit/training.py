"""Training pieces behind train_model.py (and bench/): packing the stories into blocks, the GPT-2
model, the Trainer's arguments and callbacks, the loss curve. Functions take plain arguments.
"""

import json
import math
import re
import zipfile
from pathlib import Path

from lmkit.data import load_stories
from lmkit.folders import RUN_RECORD, read_run_record, tokenizer_fingerprint, weights_are_finite, write_run_record
from lmkit.settings import drop_warnings, first_line

# settings that must match for a checkpoint in MODEL_DIR to be resumed (config.json's names), and
# train_model.py's names for those of them that are settings
ARCHITECTURE_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
ARCHITECTURE_SETTINGS = ("CONTEXT_LENGTH", "N_EMBD", "N_LAYER", "N_HEAD")
# train_model.py settings that change nothing in the trained weights: a finished model trained with
# other values of these may be trained again over itself
HARMLESS_SETTINGS = ("MODEL_DIR", "TOKENIZER_DIR", "OVERWRITE", "NUM_PROC", "DATALOADER_WORKERS", "COMPILE",
                     "SAVE_TOTAL_LIMIT", "LOGGING_STEPS", "EVAL_STEPS", "EVAL_BLOCKS", "NGRAM_STORIES", "FUSED_LOSS",
                     "LOSS_CHUNK_SIZE", "THREADS")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


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


def spread_subset(blocks, count):
    """`count` of the blocks, evenly spread over them (all of them for 0 or more than there are): an
    evaluation of a bounded cost that still sees every part of the set."""
    if not 0 < count < len(blocks):
        return blocks
    return blocks.select([index * len(blocks) // count for index in range(count)])


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


def training_memory(vocab_size, *, context_length, n_embd, n_layer, n_head, batch_size):
    """(parameters, bytes a training step needs about) for a GPT-2 of these sizes in fp32: weights,
    gradients and AdamW's two moments (16 bytes a parameter), and the activations that the backward
    pass keeps (Korthikanti et al. 2022: s*b*h*(34 + 5*a*s/h) per layer in 16 bits; twice that in 32)."""
    parameters = (vocab_size + context_length) * n_embd + n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd
    activations = 2 * context_length * batch_size * n_layer * (34 * n_embd + 5 * n_head * context_length)
    return parameters, 16 * parameters + activations


def available_memory(device):
    """Bytes free now: on the GPU for "cuda", else in main memory (psutil, which accelerate needs)."""
    if device == "cuda":
        import torch
        return torch.cuda.mem_get_info()[0]
    import psutil
    return psutil.virtual_memory().available


def count_parameters(model):
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    return total, total - embeddings  # the LM head shares the token embedding


# what a resume needs of a Trainer checkpoint: without the optimizer's or scheduler's state, the Trainer
# would carry on with fresh ones and say nothing
CHECKPOINT_FILES = ("model.safetensors", "config.json", "trainer_state.json", "optimizer.pt", "scheduler.pt")


def checkpoint_problem(checkpoint):
    """Why the Trainer checkpoint folder cannot be resumed, or None when it can: a file missing or
    written only in part (the Trainer writes trainer_state.json last, so a save cut short lacks it,
    or leaves it or another file truncated), or a step in its name that its state does not record."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        return "it is a file, not a folder"
    missing = [name for name in CHECKPOINT_FILES if not (checkpoint / name).is_file()]
    if missing:
        return f"it has no {' or '.join(missing)}"
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        from safetensors import safe_open
        with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as weights:
            weights.keys()  # safe_open checks the header against the file's length
    except Exception as error:  # truncated or garbled: SafetensorError is none of the usual types
        return f"a file is cut short or garbled ({first_line(error)})"
    damaged = [path.name for path in sorted(checkpoint.glob("*.pt*")) if not is_torch_archive(path)]
    if damaged:
        return f"{damaged[0]} is cut short or garbled"
    step = state.get("global_step") if isinstance(state, dict) else None
    named = CHECKPOINT_RE.match(checkpoint.name)
    if not isinstance(step, int) or (named and int(named[1]) != step):
        return f"its trainer_state.json records step {step}, not the step in its name"
    return None


def is_torch_archive(path):
    """Whether `path` reads as what torch.save writes: a zip archive (whose directory is at the end, so a
    cut-short file has none) holding a pickle and a version record, every member matching its CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            return (any(name.endswith("/data.pkl") for name in names) and any(name.endswith("/version") for name in names)
                    and archive.testzip() is None)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def checkpoint_folders(model_dir):
    """The checkpoint-N entries in `model_dir`, the last (highest N) first: folders, and any file that
    bears such a name (it cannot be resumed, and would stop the Trainer saving that step)."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return []
    numbered = sorted(((int(match[1]), path) for path in folder.iterdir()
                       if (match := CHECKPOINT_RE.match(path.name))), reverse=True)
    return [path for _, path in numbered]


def checkpoint_step(checkpoint):
    """The step in a checkpoint-N folder's name (checkpoint_problem has checked that its state agrees)."""
    return int(CHECKPOINT_RE.match(Path(checkpoint).name)[1])


def load_checkpoint_weights(model, checkpoint):
    """Load a checkpoint's model.safetensors into `model` (built with the same architecture), as a
    resume would, for a run that has no step left to train. The output layer shares the embedding's
    weights, so the file holds no lm_head.weight."""
    from safetensors.torch import load_file
    state = load_file(str(Path(checkpoint) / "model.safetensors"), device=str(model.device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ValueError(f"{checkpoint}/model.safetensors does not fit the model "
                         f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    model.tie_weights()


def restore_from_checkpoint(model_dir, checkpoint):
    """Put back the damaged files of the finished model in `model_dir` (see finished_model_problem) from
    `checkpoint`, saved at its last step with the same weights; return their names. Only those files
    change (a folder in a file's place is moved aside as NAME.damaged); config.json gets back the
    generation cache that training turns off."""
    import shutil

    from lmkit.files import replace_atomically
    model_dir, checkpoint = Path(model_dir), Path(checkpoint)
    try:
        json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        damaged = []
    except (ValueError, OSError):
        damaged = ["config.json"]
    from safetensors import safe_open
    for source in sorted(checkpoint.glob("model*.safetensors")):
        try:
            with safe_open(str(model_dir / source.name), framework="pt") as weights:
                weights.keys()
        except Exception:  # cut short, garbled, missing, or a folder
            damaged.append(source.name)
    for name in damaged:
        target = model_dir / name
        if target.is_dir():
            target.rename(target.with_name(name + ".damaged"))
        if name == "config.json":
            config = json.loads((checkpoint / name).read_text(encoding="utf-8"))
            config["use_cache"] = True
            replace_atomically(target, lambda path: path.write_text(json.dumps(config, indent=2) + "\n"))
        else:
            replace_atomically(target, lambda path, source=checkpoint / name: shutil.copyfile(source, path))
    return damaged


def find_checkpoints(model_dir):
    """(the last complete checkpoint in `model_dir` or None, [(an incomplete one after it, why)])."""
    incomplete = []
    for path in checkpoint_folders(model_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, incomplete
        incomplete.append((path, problem))
    return None, incomplete


def set_aside(checkpoint):
    """Rename an incomplete checkpoint so that neither the Trainer nor a later run takes it for one."""
    checkpoint = Path(checkpoint)
    target = checkpoint.with_name("incomplete-" + checkpoint.name)
    if target.is_dir():
        import shutil
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    checkpoint.rename(target)
    return target


def remove_half_written(model_dir):
    """Delete the newest checkpoint if it is incomplete (a save cut short by a full disk or a folder made
    read-only; the run that wrote it is the one failing) and return its path; None if there is none."""
    found = checkpoint_folders(model_dir)
    if not found or checkpoint_problem(found[0]) is None:
        return None
    import shutil
    shutil.rmtree(found[0], ignore_errors=True)
    return None if found[0].exists() else found[0]


def set_aside_checkpoints(model_dir):
    """Move every checkpoint in `model_dir` into one `replaced-TIME` folder there (None if it has none):
    out of a later run's way, but not lost until the run that replaces them has saved a checkpoint."""
    old = checkpoint_folders(model_dir) + sorted(Path(model_dir).glob("incomplete-checkpoint-*"))
    if not old:
        return None
    import time
    aside = Path(model_dir, time.strftime("replaced-%Y%m%d-%H%M%S"))
    aside.mkdir()
    for path in old:
        path.rename(aside / path.name)
    return aside


def differences(before, now, ignore=()):
    """["NAME old -> new", ...] for the settings that differ (ones missing from `before` are skipped)."""
    return [f"{name} {before[name]!r} -> {value!r}" for name, value in now.items()
            if name not in ignore and name in before and before[name] != value]


def saved_model_mismatch(folder, architecture, fingerprint, settings=None):
    """Why the model or checkpoint in `folder` cannot be continued by (or replaced with) a run of
    `architecture` ({ARCHITECTURE_KEY: value}) with tokenizer `fingerprint`: a list of reasons.

    With `settings`, a difference in any that shapes the weights counts too (for a finished model,
    which a run with other settings would replace rather than continue).
    """
    folder = Path(folder)
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return [f"a {folder / 'config.json'} that cannot be read"]
    reasons = [f"{key} {saved.get(key)} (now {architecture[key]})" for key in ARCHITECTURE_KEYS
               if saved.get(key) != architecture[key]]
    record = read_run_record(folder)
    saved_fingerprint = (record or {}).get("tokenizer")
    if saved_fingerprint is None and (folder / "tokenizer.json").is_file():
        saved_fingerprint = tokenizer_fingerprint(folder)
    if saved_fingerprint is not None and saved_fingerprint != fingerprint:
        reasons.append("another tokenizer (its vocabulary differs from TOKENIZER_DIR's)")
    if settings is not None:
        if record is None:
            reasons.append(f"settings that were not recorded (no {RUN_RECORD})")
        else:
            reasons += differences(record.get("settings", {}), settings,
                                   ignore=HARMLESS_SETTINGS + ARCHITECTURE_SETTINGS)
    return reasons


def trained_by(folder, architecture, fingerprint, settings):
    """Whether `folder` holds the finished model that a run of `settings` trains: a model with its run
    record that differs from these settings only in ones that change no weight (HARMLESS_SETTINGS).
    Running those settings again has nothing to do."""
    return (holds_finished_model(folder) and read_run_record(folder) is not None
            and not saved_model_mismatch(folder, architecture, fingerprint, settings)
            and finished_model_problem(folder) is None)


def holds_finished_model(folder):
    folder = Path(folder)
    return (folder / "config.json").is_file() and any(folder.glob("model*.safetensors"))


def finished_model_problem(folder):
    """Why the finished model in `folder` cannot be loaded (its config.json or weights cut short,
    garbled or not a file), or None: the header check that checkpoint_problem makes, without reading
    the weights themselves."""
    folder = Path(folder)
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        return f"its config.json cannot be read ({first_line(error)})"
    from safetensors import safe_open
    for path in sorted(folder.glob("model*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except Exception as error:  # SafetensorError, or IsADirectoryError for a folder of that name
            return f"its {path.name} is cut short or garbled ({first_line(error)})"
    return None


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


def apply_new_schedule(args, state, optimizer, lr_scheduler):
    """On resuming, make the learning rate, warm-up and schedule of `args` apply.

    The Trainer restores the scheduler and optimizer from the checkpoint, and with them the old peak
    learning rate: a run resumed with a lower LEARNING_RATE after a NaN would fail again. The
    schedule's shape (warm-up, length) already comes from `args`; only its base rate is the old one.
    It also restores the old logging/evaluation intervals with the Trainer's state.
    """
    state.compute_steps(args, state.max_steps)
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
    if not hasattr(scheduler, "lr_lambdas"):  # not train_model.py's schedule (LambdaLR): leave it
        return
    scheduler.base_lrs = [args.learning_rate for _ in scheduler.base_lrs]
    for index, group in enumerate(optimizer.param_groups):
        group["initial_lr"] = args.learning_rate
        group["lr"] = args.learning_rate * scheduler.lr_lambdas[index](scheduler.last_epoch)
        if group.get("weight_decay"):  # the Trainer's decay group (the other one has none)
            group["weight_decay"] = args.weight_decay
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def make_thread_callback(every_seconds=20.0):
    """A TrainerCallback that applies the automatic thread policy (lmkit.folders.threads_for) again
    every `every_seconds` of training on a CPU: a program that starts beside a long run takes a
    thread away, and one that ends gives it back."""
    import time

    import torch
    from transformers import TrainerCallback

    from lmkit.folders import IdleCores, threads_for

    class ThreadWatch(TrainerCallback):
        monitor, last = None, 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.monitor, self.last = IdleCores(), time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if self.monitor is not None and time.monotonic() - self.last >= every_seconds:
                threads = threads_for(self.monitor.look())
                if threads != torch.get_num_threads():
                    torch.set_num_threads(threads)
                self.last = time.monotonic()

    return ThreadWatch()


TRAINER_NOISE = (
    # compares our shares of the run (EVAL_STEPS 0 = 0.2) with the step counts they became, so it fires on
    # every resume; train_model.py names the settings that really differ from the checkpoint's
    "do not match the ones in the `trainer_state.json`",
    # checkpoint rotation in a short run (checkpoints less than a second apart) sorts them by step all the same
    "mtime may not be reliable on this filesystem",
)


def quiet_trainer_warnings():
    """Drop the Trainer's warnings in TRAINER_NOISE, which a user can do nothing about."""
    drop_warnings("transformers.trainer_utils", *TRAINER_NOISE)


def make_guard_callback(run_record=None, after_first_save=None):
    """Stops cleanly on Ctrl-C (after saving a checkpoint) and on a non-finite loss or weight
    (without saving); on resuming, applies the learning rate now set (see `apply_new_schedule`);
    writes `run_record` into every checkpoint; calls `after_first_save()` once the first is saved."""
    from transformers import TrainerCallback

    class Guard(TrainerCallback):
        interrupted = False
        bad_loss_step = None

        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            if state.global_step > 0 and optimizer is not None and lr_scheduler is not None:
                apply_new_schedule(args, state, optimizer, lr_scheduler)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if self.interrupted:
                control.should_save = True
                control.should_training_stop = True
            if control.should_save:  # the Trainer logs before it saves: on_log then sees this step's loss
                control.should_log = True
                if model is not None and not weights_are_finite(model):
                    self.stop_for_bad_loss(state, control)

        def stop_for_bad_loss(self, state, control):
            self.bad_loss_step = state.global_step
            control.should_save = False  # never checkpoint broken weights
            control.should_evaluate = False
            control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            nonlocal after_first_save
            if run_record is not None and state.is_world_process_zero:
                write_run_record(Path(args.output_dir, f"checkpoint-{state.global_step}"), run_record)
            if after_first_save is not None and state.is_world_process_zero:
                after_first_save()
                after_first_save = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                self.stop_for_bad_loss(state, control)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            if loss is not None and not math.isfinite(loss):
                self.stop_for_bad_loss(state, control)

    return Guard()
