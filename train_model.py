"""Train a small GPT-2 from scratch on TinyStories with the word-level tokenizer.

    python train_model.py                                        # hub data set, one epoch
    python train_model.py --dataset=TinyStories-train.txt --valid_dataset=TinyStories-valid.txt
    python train_model.py --max_steps=300 --batch_size=32        # a quick run
    torchrun --nproc_per_node=4 train_model.py                   # 4 GPUs on one machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST --master_port=29500 train_model.py

Re-running the same command resumes an unfinished run from the last complete checkpoint in
MODEL_DIR, with the LEARNING_RATE and schedule now set, and leaves a finished one as it is (raise
MAX_STEPS to train further); Ctrl-C saves a checkpoint and stops (exit status 130). A MODEL_DIR that
holds a model or checkpoints made with another tokenizer or other settings is refused unless
--overwrite=true. MODEL_DIR ends up with the model, the tokenizer, a model card (README.md),
metrics.json and loss_curve.png, loadable with AutoModelForCausalLM / AutoTokenizer /
pipeline("text-generation").
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
EVAL_BLOCKS = 128  # validation blocks per evaluation during training, spread over the set (0 = all); the last uses all
SAVE_TOTAL_LIMIT = 3  # checkpoints kept in MODEL_DIR
LOGGING_STEPS = 0  # log the training loss every N steps (0 = about 50 times per run)
COMPILE = False  # torch.compile the model (faster on a GPU after a minute of compiling)
FUSED_LOSS = True  # loss from the hidden states a chunk of tokens at a time, never the full logits (lmkit/lm_loss.py)
LOSS_CHUNK_SIZE = 0  # tokens per chunk of that loss (0 = 512 on a CPU, 2048 on a GPU)
NUM_PROC = 0  # processes for tokenizing (0 = one per CPU core for large data, else 1)
DATALOADER_WORKERS = -1  # processes reading batches ahead (-1 = 4 on a GPU, so it never waits; 0 on a CPU)
SEED = 42  # same seed, same data order and initial weights
THREADS = 0  # torch's CPU threads (0 = automatic: one per core other programs leave idle, checked as it runs; none idle: one per core, sleeping while they wait)
NGRAM_STORIES = 50_000  # stories whose n-gram model (ngrams.pt) pilish_generate mixes with the model (0 = none)
OVERWRITE = False  # start afresh over a model or checkpoints in MODEL_DIR made with another tokenizer or settings

import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from lmkit import files, publish, training
from lmkit.files import folder_lock
from lmkit.folders import (cpu_threads, load_tokenizer, peak_memory, pick_device, read_run_record, run_record,
                           use_cpu_threads, vocabulary_fingerprint, write_run_record)
from lmkit.settings import (UserError, at_least, cannot_write, check_seed_and_threads, check_writable, next_command,
                            run_script, within, write_error_code)
from lmkit.text import EOT, PAD


def check_settings(config):
    """Every setting's range, before any work (the libraries would fail later, or worse, not at all)."""
    at_least(config, 1, "N_LAYER", "N_HEAD", "N_EMBD", "BATCH_SIZE", "GRADIENT_ACCUMULATION", "SAVE_TOTAL_LIMIT")
    at_least(config, 2, "CONTEXT_LENGTH")  # a block of one token has nothing to predict: the loss is NaN
    at_least(config, 0, "MAX_STEPS", "EVAL_STEPS", "EVAL_BLOCKS", "LOGGING_STEPS", "NUM_PROC", "NGRAM_STORIES",
             "LOSS_CHUNK_SIZE", "THREADS")
    at_least(config, -1, "DATALOADER_WORKERS")
    cores = os.cpu_count() or 1  # more processes than cores only wait for each other
    within(config, "NUM_PROC", 0, cores)
    within(config, "DATALOADER_WORKERS", -1, cores)
    check_seed_and_threads(config)
    if config.N_EMBD % config.N_HEAD:
        raise UserError(f"N_EMBD ({config.N_EMBD}) must be a multiple of N_HEAD ({config.N_HEAD})")
    if config.LEARNING_RATE <= 0:
        raise UserError(f"LEARNING_RATE must be above 0, not {config.LEARNING_RATE}")
    if config.MAX_STEPS == 0 and config.NUM_EPOCHS <= 0:
        raise UserError(f"NUM_EPOCHS must be above 0, not {config.NUM_EPOCHS} (or set MAX_STEPS)")
    for name in ("MODEL_DIR", "TOKENIZER_DIR", "DATASET"):
        if not getattr(config, name).strip():
            raise UserError(f"{name} is empty: give a path")
    within(config, "DROPOUT", 0, 1, high_open=True)
    within(config, "WARMUP", 0, 1, high_open=True)
    within(config, "VALID_FRACTION", 0, 1, low_open=True, high_open=True)
    at_least(config, 0, "WEIGHT_DECAY", "MAX_GRAD_NORM")


def settings_of(config):
    return {name: value for name, value in vars(config).items()}


def check_model_dir(config, architecture, fingerprint, log):
    """The checkpoint to resume (or None) once MODEL_DIR is safe to write; a UserError when this run
    would overwrite or continue a model made with another tokenizer or other settings."""
    way_out = "choose another MODEL_DIR, or pass --overwrite=true to start afresh over it"
    checkpoint, incomplete = training.find_checkpoints(config.MODEL_DIR)
    if checkpoint is not None:
        reasons = training.saved_model_mismatch(checkpoint, architecture, fingerprint)
        if reasons and not config.OVERWRITE:
            raise UserError(f"{checkpoint} was trained with {', '.join(reasons)}: {way_out}")
    elif training.holds_finished_model(config.MODEL_DIR):
        damage = training.finished_model_problem(config.MODEL_DIR)
        if damage and not config.OVERWRITE:
            raise UserError(f"the model in {config.MODEL_DIR} is damaged: {damage}, and no checkpoint is left to "
                            f"save again; pass --overwrite=true to train afresh over it (or choose another MODEL_DIR)")
        reasons = [damage] if damage else training.saved_model_mismatch(
            config.MODEL_DIR, architecture, fingerprint, settings_of(config))
        if reasons and not config.OVERWRITE:
            raise UserError(f"{config.MODEL_DIR} holds a finished model trained with {', '.join(reasons)}: "
                            f"{way_out}")
    else:
        reasons = []
    is_main = int(os.environ.get("RANK", "0")) == 0
    if config.OVERWRITE and reasons:  # the old checkpoints are set aside later, once every input has loaded
        log(f"--overwrite: starting afresh over {config.MODEL_DIR} ({', '.join(reasons)})")
        return None
    for path, problem in incomplete:
        if is_main:
            moved = training.set_aside(path)
            print(f"warning: {path} cannot be resumed ({problem}); set aside as {moved.name}", file=sys.stderr)
    return checkpoint


def main(config):
    check_settings(config)  # before the heavy imports: a bad value is reported at once
    if Path(config.MODEL_DIR).resolve() == Path(config.TOKENIZER_DIR).resolve() and not Path(
            config.MODEL_DIR, "config.json").is_file():  # a model folder holds its own copy of the tokenizer
        raise UserError(f"MODEL_DIR is the tokenizer folder {config.TOKENIZER_DIR}: the model would be saved "
                        f"over it; choose another MODEL_DIR")
    threads = cpu_threads(config.THREADS, training=True)  # before torch loads, which reads OMP_WAIT_POLICY once
    tokenizer = load_tokenizer(config.TOKENIZER_DIR)
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:  # a foreign tokenizer
        raise UserError(f"the tokenizer in {config.TOKENIZER_DIR} has no {EOT} or {PAD} token: "
                        f"make one with train_tokenizer.py")
    parameters, needed = training.training_memory(
        len(tokenizer), context_length=config.CONTEXT_LENGTH, n_embd=config.N_EMBD, n_layer=config.N_LAYER,
        n_head=config.N_HEAD, batch_size=config.BATCH_SIZE)
    device = pick_device()
    free = training.available_memory(device)
    if needed > free:  # refuse now, before the model is built: an allocation this size can freeze the machine
        raise UserError(f"a model of {parameters:.3g} parameters trained in batches of {config.BATCH_SIZE} x "
                        f"{config.CONTEXT_LENGTH} tokens needs about {needed / 2**30:.3g} GiB, and {device} has "
                        f"{free / 2**30:.3g} GiB free: lower BATCH_SIZE, CONTEXT_LENGTH, N_EMBD or N_LAYER")
    check_writable(config.MODEL_DIR, "MODEL_DIR")
    # one run writes MODEL_DIR at a time (under torchrun, rank 0 holds the lock for all ranks)
    with folder_lock(config.MODEL_DIR, "MODEL_DIR", enabled=int(os.environ.get("RANK", "0")) == 0):
        train(config, tokenizer, threads)


def train(config, tokenizer, threads=None):
    """Everything after the checks: resume or start, train, evaluate, save."""
    from transformers import Trainer, TrainerState, set_seed

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    is_main = int(os.environ.get("RANK", "0")) == 0
    log = print if is_main else (lambda *args, **kwargs: None)
    fingerprint = vocabulary_fingerprint(tokenizer.get_vocab())
    architecture = dict(vocab_size=len(tokenizer), n_positions=config.CONTEXT_LENGTH, n_embd=config.N_EMBD,
                        n_layer=config.N_LAYER, n_head=config.N_HEAD)
    if training.trained_by(config.MODEL_DIR, architecture, fingerprint, settings_of(config)):
        return already_trained(config, tokenizer, log)  # a finished run is a fixed point: no file changes
    checkpoint = check_model_dir(config, architecture, fingerprint, log)  # before the data's long tokenizing
    starts_afresh = config.OVERWRITE and checkpoint is None
    record = run_record(settings_of(config), fingerprint)
    set_seed(config.SEED)
    device = pick_device()
    threads = use_cpu_threads(config.THREADS, device, threads)
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
    resumed_step = training.checkpoint_step(checkpoint) if checkpoint else 0
    nothing_left = checkpoint is not None and resumed_step >= total_steps  # the Trainer would train a step more
    damage = training.finished_model_problem(config.MODEL_DIR) if training.holds_finished_model(config.MODEL_DIR) \
        else None
    if nothing_left and damage:  # damaged after it was saved: its last checkpoint has the same weights
        restored = training.restore_from_checkpoint(config.MODEL_DIR, checkpoint) if is_main else []
        log(f"the model in {config.MODEL_DIR} was damaged ({damage}): put back {' and '.join(restored)} from "
            f"{checkpoint.name}, saved at its last step; nothing else changed")
        return
    if nothing_left and training.holds_finished_model(config.MODEL_DIR) and not damage:
        if not config.OVERWRITE:
            raise UserError(finished_elsewhere(config, checkpoint, resumed_step, total_steps))
        log(f"--overwrite: starting afresh over {config.MODEL_DIR}")
        checkpoint, resumed_step, nothing_left, starts_afresh = None, 0, False, True
    aside = training.set_aside_checkpoints(config.MODEL_DIR) if starts_afresh and is_main else None
    if aside is not None:  # every input has loaded: only now does anything of the old run move
        log(f"--overwrite: the old checkpoints wait in {aside} until this run saves its first one")

    model = training.build_model(
        len(tokenizer), context_length=config.CONTEXT_LENGTH, n_embd=config.N_EMBD, n_layer=config.N_LAYER,
        n_head=config.N_HEAD, dropout=config.DROPOUT, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    if config.FUSED_LOSS:  # a training-time detail: the model stays, and is saved as, a plain GPT2LMHeadModel
        from lmkit.lm_loss import default_chunk_size, use_chunked_loss
        use_chunked_loss(model, config.LOSS_CHUNK_SIZE or default_chunk_size(device))
    total, non_embedding = training.count_parameters(model)
    eval_blocks = training.spread_subset(valid_blocks, config.EVAL_BLOCKS)
    log(f"data: {len(train_blocks):,} training blocks and {len(valid_blocks):,} validation blocks of "
        f"{config.CONTEXT_LENGTH} tokens (tokenized in {tokenize_seconds:.1f} s)")
    log(f"model: {total / 1e6:.2f}M parameters, {non_embedding / 1e6:.2f}M outside the embeddings; "
        f"vocabulary {len(tokenizer):,}" + ("" if len(tokenizer) >= 30000 else
        " (smaller than the default 30k, so the model is too)"))
    precision = training.precision(device)
    log(f"device: {device} x {world_size}, {precision}{'; ' + threads if threads else ''}; {total_steps:,} steps of "
        f"{block_tokens:,} tokens")

    if checkpoint:
        before = (read_run_record(checkpoint) or {}).get("settings", {})
        old_rate = before.get("LEARNING_RATE", config.LEARNING_RATE)
        new_rate = (f" with LEARNING_RATE now {config.LEARNING_RATE} (checkpoint had {old_rate}), on the schedule "
                    f"now set" if old_rate != config.LEARNING_RATE else "")
        log(f"resuming from {checkpoint}{new_rate}")
        changed = training.differences(before, settings_of(config), ignore=("LEARNING_RATE", "OVERWRITE", "MODEL_DIR"))
        if changed:
            log(f"settings that differ from the checkpoint's (this run uses the new ones): {', '.join(changed)}")

    forget_aside = (lambda: shutil.rmtree(aside, ignore_errors=True)) if aside else None
    guard = training.make_guard_callback(record, after_first_save=forget_aside)
    log(f"evaluation: {len(eval_blocks):,} of the {len(valid_blocks):,} validation blocks at each checkpoint, "
        f"all of them at the end" if len(eval_blocks) < len(valid_blocks) else
        f"evaluation: all {len(valid_blocks):,} validation blocks at each checkpoint and at the end")
    # threads that sleep while they wait keep their number: beside busy programs two get more done than one
    watch = "automatic" in threads and "sleep" not in threads
    callbacks = [guard] + ([training.make_thread_callback()] if watch else [])
    trainer = Trainer(model=model, args=args, train_dataset=train_blocks, eval_dataset=eval_blocks,
                      data_collator=training.collate_blocks, processing_class=tokenizer, callbacks=callbacks)

    def on_interrupt(signum, frame):
        if guard.interrupted:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        guard.interrupted = True
        log("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to quit without saving)")

    training.quiet_trainer_warnings()
    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    started = time.perf_counter()
    try:
        if nothing_left:  # stopped between its last checkpoint and saving the model, or the model damaged since
            log(f"{checkpoint.name} holds all {total_steps:,} steps these settings train: it becomes the model, "
                f"with no step more")
            training.load_checkpoint_weights(trainer.model, checkpoint)
            trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
            result = None
        else:
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except Exception as error:  # a full disk or a folder made read-only while a checkpoint was written
        code = write_error_code(error, config.MODEL_DIR)  # before the half-written checkpoint frees its space
        if not code:
            raise
        removed = training.remove_half_written(config.MODEL_DIR)
        last = training.find_checkpoints(config.MODEL_DIR)[0]
        raise cannot_write(getattr(error, "filename", None) or config.MODEL_DIR, error, code=code, then=(
            f"run the same command: it resumes from {last.name}" if last else "run the same command")
            + (f" ({removed.name} was half-written and is removed)" if removed else "")) from None
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    wall_seconds = time.perf_counter() - started
    peak_bytes, peak_of = peak_memory(device)  # before evaluation and saving, which only add to it

    if guard.bad_loss_step is not None:
        raise UserError(f"the training loss became NaN or infinite by step {guard.bad_loss_step}; nothing was "
                        f"saved for it. Lower LEARNING_RATE (now {config.LEARNING_RATE}) and run again: "
                        f"it resumes from the last good checkpoint")
    if guard.interrupted:  # not a success: `train_model.py && generate.py` must not go on
        log(f"stopped at step {trainer.state.global_step}; run the same command to resume")
        sys.exit(130)

    evaluation = trainer.evaluate(valid_blocks)  # the whole set; every rank takes part, then rank 0 alone writes
    if not math.isfinite(evaluation["eval_loss"]):  # never replace a model with broken weights
        raise UserError(f"the validation loss is {evaluation['eval_loss']}; nothing was saved. Lower "
                        f"LEARNING_RATE (now {config.LEARNING_RATE}) and run again")
    trainer.model.config.use_cache = True  # training switched the KV cache off; generation wants it
    tokenizer.model_max_length = config.CONTEXT_LENGTH  # pipeline's handle_long_generation reads it
    tokenizer.truncation_side = tokenizer.init_kwargs["truncation_side"] = "left"  # a cut prompt keeps its end
    if not trainer.is_world_process_zero():
        return
    files.save_into(config.MODEL_DIR, trainer.save_model)  # weights, config, tokenizer: each renamed in whole
    write_run_record(config.MODEL_DIR, record)
    steps_this_run = trainer.state.global_step - resumed_step
    metrics = {
        "device": f"{device} x {world_size}", "precision": precision,
        "parameters": total, "non_embedding_parameters": non_embedding,
        "steps": trainer.state.global_step, "tokens_seen": trainer.state.global_step * block_tokens,
        "tokens_per_second": steps_this_run * block_tokens / wall_seconds if wall_seconds and steps_this_run else None,
        "wall_seconds": wall_seconds, "tokenize_seconds": tokenize_seconds,
        "peak_memory_bytes": peak_bytes, "peak_memory_of": peak_of,
        "train_loss": result.training_loss if result else last_logged(trainer.state.log_history, "train_loss", "loss"),
        "valid_loss": evaluation["eval_loss"],
        "valid_perplexity": math.exp(evaluation["eval_loss"]),
        "log_history": trainer.state.log_history,
    }
    files.write_text(Path(config.MODEL_DIR, "metrics.json"), json.dumps(metrics, indent=1))
    if config.NGRAM_STORIES > 0:  # seconds for the sample; the first stories stand for a large set
        from pilish.ngram import ngram_model, save_ngram_model
        stories = train_stories.select(range(min(config.NGRAM_STORIES, len(train_stories))))["text"]
        save_ngram_model(config.MODEL_DIR, ngram_model(tokenizer, stories))
    training.plot_loss_curve(trainer.state.log_history, Path(config.MODEL_DIR, "loss_curve.png"))
    write_card(config, trainer.model, tokenizer, metrics, len(valid_blocks))
    log(f"validation loss {evaluation['eval_loss']:.3f} (perplexity {math.exp(evaluation['eval_loss']):.1f}); "
        + (f"{metrics['tokens_per_second']:,.0f} tokens/s over {wall_seconds:.0f} s" if steps_this_run else
           "no step trained") + f"; peak {peak_of} "
        f"{(peak_bytes or 0) / 2**30:.2f} GiB")
    log(f"saved model, tokenizer, model card (README.md), metrics.json, loss_curve.png"
        f"{' and ngrams.pt' * (config.NGRAM_STORIES > 0)} to {config.MODEL_DIR}/ -- next: "
        + next_command("generate.py", MODEL_DIR=(config.MODEL_DIR, "model")))


def finished_elsewhere(config, checkpoint, step, total_steps):
    """Why a run with other settings over a finished model has nothing to train (a UserError's text)."""
    before = (read_run_record(config.MODEL_DIR) or read_run_record(checkpoint) or {}).get("settings", {})
    changed = training.differences(before, settings_of(config), ignore=training.HARMLESS_SETTINGS)
    differ = f"; the settings that differ ({', '.join(changed)}) would apply only to steps after it" if changed else ""
    return (f"{config.MODEL_DIR} holds a model trained for {step:,} steps, all that these settings train "
            f"({total_steps:,}){differ}: raise MAX_STEPS or NUM_EPOCHS to train it further, or choose another "
            f"MODEL_DIR, or pass --overwrite=true to train afresh over it")


def last_logged(log_history, *keys):
    """The last value of the first of `keys` found in the Trainer's log history, or None."""
    for entry in reversed(log_history):
        for key in keys:
            if key in entry:
                return entry[key]
    return None


def already_trained(config, tokenizer, log):
    """Say that MODEL_DIR holds what this command trains, and how to train further on purpose. Only a
    missing ngrams.pt is written (delete an old one to have it made again); nothing else is touched."""
    metrics_file = Path(config.MODEL_DIR, "metrics.json")
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    done = f" ({metrics['steps']:,} steps, validation loss {metrics['valid_loss']:.3f})" if "steps" in metrics else ""
    log(f"{config.MODEL_DIR} already holds the model these settings train{done}: nothing to do. To train it "
        f"further, raise MAX_STEPS or NUM_EPOCHS and run again (it resumes from its last checkpoint); to train "
        f"another, choose another MODEL_DIR")
    from pilish.ngram import NGRAMS_FILE, ngram_model, save_ngram_model
    if config.NGRAM_STORIES > 0 and not Path(config.MODEL_DIR, NGRAMS_FILE).is_file():
        stories = training.load_splits(config.DATASET, config.VALID_DATASET, config.VALID_FRACTION, config.SEED)[0]
        stories = stories.select(range(min(config.NGRAM_STORIES, len(stories))))["text"]
        save_ngram_model(config.MODEL_DIR, ngram_model(tokenizer, stories))
        log(f"wrote the missing {NGRAMS_FILE} to {config.MODEL_DIR}/")


def write_card(config, model, tokenizer, metrics, valid_blocks):
    """MODEL_DIR/README.md, the model card, and the .gitignore that keeps checkpoints out of a push."""
    prompt = "once upon a time"
    card = publish.model_card(
        name=Path(config.MODEL_DIR).name, dataset=config.DATASET, settings=settings_of(config),
        parameters=metrics["parameters"], non_embedding=metrics["non_embedding_parameters"],
        vocabulary=len(tokenizer), steps=metrics["steps"], tokens_seen=metrics["tokens_seen"],
        valid_loss=metrics["valid_loss"], valid_blocks=valid_blocks, sample_prompt=prompt,
        sample=publish.greedy_sample(model, tokenizer, prompt))
    files.write_text(Path(config.MODEL_DIR, publish.CARD), card)
    publish.write_ignore_file(config.MODEL_DIR)


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
    run_script(main, globals(), memory_hint="lower BATCH_SIZE (raising GRADIENT_ACCUMULATION keeps the batch), "
               "CONTEXT_LENGTH or the model's size, and run again: it resumes from its last checkpoint")
    leave_process_group()
