"""Training throughput: the stock loss against lm_loss's chunked one, eager against torch.compile,
and this kit's data path against the way a typical tutorial does it.

    python -m bench.train_speed                         # about 10 minutes on 2 CPU cores (compiling is most of it)
    python -m bench.train_speed --compile=false --steps=20 --repeats=5
    python -m bench.train_speed --batch_sizes=[64,128,256]          # on a GPU
    python -m bench.train_speed --record=false          # print the table only

"ours" is train_model.py exactly: stories tokenized with datasets.map and packed into full blocks
(no padding), GPT-2 with exact GELU and PyTorch's fused attention, Trainer (fp32 on CPU, bf16 + tf32
on CUDA), with the stock loss (the full logits) or the chunked one (lmkit/lm_loss.py, its FUSED_LOSS), each
eager and compiled (its COMPILE). "tutorial" tokenizes each story alone, padded to CONTEXT_LENGTH, uses
DataCollatorForLanguageModeling and a stock GPT2Config (gelu_new, dropout 0.1), Trainer, fp32.
All use train_model.py's default architecture (CONTEXT_LENGTH ... LEARNING_RATE below hold its
defaults) with a 30,000-word output layer, the size that dominates the cost.
The sample's stories are repeated as often as the steps need. Throughput counts only real
(non-padding) tokens; MFU is against a dense matmul measured in the same run. Appends the table
to BENCHMARKS.md.
"""

TRAIN_FILE = ""  # stories to train on ("" = the bundled sample, data/tinystories-sample/train.txt.gz)
TOKENIZER_DIR = ""  # a trained tokenizer ("" = train one on TRAIN_FILE into a temporary folder, ~1 s)
VOCAB_SIZE = 30000  # width of the output layer; the sample's tokenizer has fewer words, its ids all fit
CONTEXT_LENGTH = 256  # tokens per block (train_model.py's default)
N_LAYER = 4  # transformer blocks (train_model.py's default)
N_HEAD = 4  # attention heads per block (train_model.py's default)
N_EMBD = 128  # width (train_model.py's default)
DROPOUT = 0.0  # dropout of "ours" (train_model.py's default; the tutorial's stock GPT2Config has 0.1)
LEARNING_RATE = 2e-3  # peak learning rate of "ours" (train_model.py's default)
BATCH_SIZES = []  # blocks per step, a set of rows each ([] = 64 and 256 on a GPU; 16 on a CPU)
COMPILE = True  # also measure torch.compile'd rows (on a CPU each takes minutes to compile)
TUTORIAL = True  # also measure the tutorial setup, at the first batch size
STEPS = 8  # timed steps per measurement
WARMUP_STEPS = 2  # untimed steps before them (compiling, allocator, thread pools, first-step set-up)
REPEATS = 3  # measurements per setup; the table quotes medians
MATMUL_SIZE = 0  # side of the square matmuls that measure peak FLOP/s (0 = 2048 on CPU, 8192 on a GPU)
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # same seed, same batches and initial weights in every repeat

import contextlib
import io
import tempfile
import time
from pathlib import Path

from bench.support import data_file, matmul_peak, median, profiled_peak, report, run_project_script
from lmkit import lm_loss, training
from lmkit.data import load_stories
from lmkit.folders import load_tokenizer, pick_device
from lmkit.settings import UserError, at_least, run_script, within


def step_clock(probe_step):
    """A TrainerCallback that notes the time at the start of training and at the end of every
    optimizer step, and measures step `probe_step`'s peak memory (bench.support.peak_memory's measures:
    on a GPU the peak of the whole run so far; on a CPU that step's peak above its start, which
    leaves out the weights and optimizer state; the profiler slows the step, so it is not timed)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    on_cuda = torch.cuda.is_available()

    def sync():
        if on_cuda:  # the GPU may still be working through the step
            torch.cuda.synchronize()

    class StepClock(TrainerCallback):
        def __init__(self):
            self.started, self.step_ends, self.peak, self.profiler = None, [], None, None

        def on_train_begin(self, args, state, control, **kwargs):
            if on_cuda:
                sync()
                torch.cuda.reset_peak_memory_stats()
            self.started = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step + 1 == probe_step and not on_cuda:
                self.profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
                self.profiler.start()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.step_ends.append(time.perf_counter())
            if state.global_step == probe_step:
                if on_cuda:
                    self.peak = torch.cuda.max_memory_allocated()
                else:
                    self.profiler.stop()
                    self.peak = profiled_peak(self.profiler)

    return StepClock()


def count_real_tokens(model):
    """Record, for every forward pass, how many of its tokens are real (attention mask ones)."""
    counts = []

    def hook(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
        counts.append(int(mask.sum()) if mask is not None else ids.numel())

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return counts


def training_arguments(output_dir, config, batch_size, total_steps, ours, compiled, device):
    """Ours: train_model.py's recipe (lmkit.training.training_arguments). Tutorial: the Trainer's defaults, fp32."""
    from transformers import TrainingArguments
    if ours:
        return training.training_arguments(output_dir, device=device, batch_size=batch_size,
                                           learning_rate=config.LEARNING_RATE, seed=config.SEED,
                                           max_steps=total_steps, compile=compiled, checkpoints=False)
    return TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=batch_size, max_steps=total_steps,
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, seed=config.SEED, use_cpu=device == "cpu", dataloader_pin_memory=device == "cuda")


class Measurement:
    def __init__(self, tokens_per_second, step_seconds, startup_seconds, peak_bytes):
        self.tokens_per_second, self.step_seconds = tokens_per_second, step_seconds
        self.startup_seconds, self.peak_bytes = startup_seconds, peak_bytes


def measure(model, dataset, collator, args, config, tokens_per_step=None):
    """One short Trainer run: WARMUP_STEPS, then STEPS timed ones, then one whose memory is measured.

    Real tokens per second over the timed steps; the seconds per step; the start-up (from train()
    to the end of the warm-up, less the warm-up steps at the timed pace: compiling, mostly); the
    peak memory. `tokens_per_step` for packed blocks, else counted from the attention masks.
    """
    from transformers import Trainer
    warmup, steps = config.WARMUP_STEPS, config.STEPS
    clock = step_clock(warmup + steps + 1)
    counts = count_real_tokens(model) if tokens_per_step is None else None
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[clock])
    with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its own summary dict
        trainer.train()
    if len(clock.step_ends) != warmup + steps + 1 or counts is not None and len(counts) != len(clock.step_ends):
        raise RuntimeError(f"expected {warmup + steps + 1} steps, saw {len(clock.step_ends)} steps"
                           + (f" and {len(counts)} forward passes" if counts is not None else ""))
    # with no warm-up the first step is left out of the timing
    first = warmup - 1 if warmup else 0
    seconds = clock.step_ends[warmup + steps - 1] - clock.step_ends[first]
    timed = steps if warmup else steps - 1
    tokens = tokens_per_step * timed if counts is None else sum(counts[first + 1:warmup + steps])
    startup = clock.step_ends[first] - clock.started - (first + 1) * seconds / timed
    return Measurement(tokens / seconds, seconds / timed, startup, clock.peak)


def flops_per_token(model, context_length):
    """6 x (non-embedding parameters + the LM head's matmul) + attention's 12 x layers x context x width."""
    c = model.config
    total = sum(p.numel() for p in model.parameters())
    non_embedding = total - model.transformer.wte.weight.numel() - model.transformer.wpe.weight.numel()
    return 6 * (non_embedding + c.n_embd * c.vocab_size) + 12 * c.n_layer * context_length * c.n_embd


def fresh_stories(path, parent):
    """The stories, read into a new `datasets` cache folder under `parent`, so no later map is a cache hit."""
    import datasets
    folder = tempfile.mkdtemp(prefix="datasets-", dir=parent)
    previous, datasets.config.HF_DATASETS_CACHE = datasets.config.HF_DATASETS_CACHE, Path(folder)
    try:
        return load_stories(str(path))
    finally:
        datasets.config.HF_DATASETS_CACHE = previous


def tutorial_tokenize(stories, tokenizer, context_length):
    """Each story on its own, padded (or cut) to the context length: the tutorials' way."""
    return stories.map(lambda batch: tokenizer(batch["text"], padding="max_length", truncation=True,
                                               max_length=context_length),
                       batched=True, remove_columns=stories.column_names, desc="tutorial tokenizing")


def repeated(dataset, rows):
    """`dataset` repeated as often as it takes to hold at least `rows` rows (the sample is small)."""
    import datasets
    if len(dataset) >= rows:
        return dataset
    copies = datasets.concatenate_datasets([dataset] * -(-rows // len(dataset)))
    return copies.with_format(dataset.format["type"])


def memory_text(peak_bytes):
    if peak_bytes is None:
        return "–"
    return f"{peak_bytes / 2**30:.2f} GiB" if peak_bytes >= 2**30 else f"{peak_bytes / 2**20:,.0f} MiB"


def main(config):
    import datasets
    import torch
    import transformers
    from transformers import DataCollatorForLanguageModeling, GPT2Config, GPT2LMHeadModel, set_seed

    if min(config.STEPS, config.REPEATS) < 1 or config.WARMUP_STEPS < 0:
        raise UserError("STEPS and REPEATS must be at least 1, WARMUP_STEPS at least 0")
    if config.WARMUP_STEPS == 0 and config.STEPS < 2:
        raise UserError("with WARMUP_STEPS=0 the first step is not timed: give STEPS of at least 2")
    at_least(config, 1, "N_LAYER", "N_HEAD", "N_EMBD")
    at_least(config, 2, "CONTEXT_LENGTH")
    within(config, "DROPOUT", 0, 1, high_open=True)
    if config.LEARNING_RATE <= 0:
        raise UserError(f"LEARNING_RATE must be above 0, not {config.LEARNING_RATE}")
    if config.N_EMBD % config.N_HEAD:
        raise UserError(f"N_EMBD ({config.N_EMBD}) must be a multiple of N_HEAD ({config.N_HEAD})")
    device = pick_device()
    on_cuda = device == "cuda"
    try:
        batch_sizes = [int(size) for size in config.BATCH_SIZES] or ([64, 256] if on_cuda else [16])
    except ValueError:
        raise UserError(f"BATCH_SIZES takes whole numbers, not {config.BATCH_SIZES}") from None
    if min(batch_sizes) < 1:
        raise UserError("every batch size must be at least 1")
    train_path = data_file(config.TRAIN_FILE, "train")
    work = tempfile.TemporaryDirectory(prefix="bench-train-speed-")
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()  # the stock config's warnings (bos/eos ids 50256 > vocabulary)

    if config.TOKENIZER_DIR:
        tokenizer = load_tokenizer(config.TOKENIZER_DIR)
    else:
        run_project_script("train_tokenizer.py", f"--dataset={train_path}", f"--tokenizer_dir={work.name}/tokenizer",
                           quiet=True)
        tokenizer = load_tokenizer(f"{work.name}/tokenizer")
    if len(tokenizer) > config.VOCAB_SIZE:
        raise UserError(f"the tokenizer has {len(tokenizer):,} tokens, more than VOCAB_SIZE={config.VOCAB_SIZE:,}")
    context = config.CONTEXT_LENGTH

    # Tokenizing: ours (map + pack, as train_model.py) and the tutorial's padded map, each from a
    # fresh cache folder, REPEATS times.
    pack_seconds, pad_seconds = [], []
    for _ in range(config.REPEATS):
        stories = fresh_stories(train_path, work.name)
        started = time.perf_counter()
        blocks = training.tokenize_and_pack(stories, tokenizer, context, None)
        pack_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        padded = tutorial_tokenize(stories, tokenizer, context)
        pad_seconds.append(time.perf_counter() - started)
    real_per_story = sum(sum(mask) for mask in padded["attention_mask"]) / len(padded)
    padding_share = 1 - real_per_story / context
    truncated = sum(1 for mask in padded["attention_mask"] if mask[-1] == 1) / len(padded)
    total_steps = config.WARMUP_STEPS + config.STEPS + 1  # the last one measures memory
    sample_blocks, sample_stories = len(blocks), len(padded)
    blocks = repeated(blocks, total_steps * max(batch_sizes))
    padded = repeated(padded, total_steps * batch_sizes[0])

    def our_model(fused):
        set_seed(config.SEED)
        model = training.build_model(  # train_model.py's model, with a VOCAB_SIZE-wide output layer
            config.VOCAB_SIZE, context_length=context, n_embd=config.N_EMBD, n_layer=config.N_LAYER,
            n_head=config.N_HEAD, dropout=config.DROPOUT, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)
        return lm_loss.use_chunked_loss(model, lm_loss.default_chunk_size(device)) if fused else model

    def tutorial_model():
        set_seed(config.SEED)
        return GPT2LMHeadModel(GPT2Config(vocab_size=config.VOCAB_SIZE, n_positions=context,
                                          n_embd=config.N_EMBD, n_layer=config.N_LAYER,
                                          n_head=config.N_HEAD))

    tutorial_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)  # pad labels become -100
    probe = our_model(False)
    parameters = sum(p.numel() for p in probe.parameters())
    flops = flops_per_token(probe, context)
    del probe
    size = config.MATMUL_SIZE or (8192 if on_cuda else 2048)
    dtype = torch.bfloat16 if on_cuda else torch.float32
    print(f"device {device}, torch threads {torch.get_num_threads()}; model {parameters / 1e6:.2f}M parameters "
          f"(vocabulary {config.VOCAB_SIZE:,}), {flops / 1e6:.1f} MFLOP per token; {config.REPEATS} x "
          f"{config.STEPS} timed steps at batch {', '.join(map(str, batch_sizes))} x {context}")

    # every setup, keyed (batch, loss, compiled) or (batch, "tutorial", False); measured back to back
    setups = [(batch, loss, compiled) for batch in batch_sizes for compiled in (False, True)[:1 + config.COMPILE]
              for loss in ("stock", "chunked")]
    if config.TUTORIAL:
        setups.insert(0, (batch_sizes[0], "tutorial", False))
    results = {setup: [] for setup in setups}
    skipped = {}
    peaks = []
    for repeat in range(config.REPEATS):
        peaks.append(matmul_peak(device, dtype, size))
        for setup in setups:
            batch, loss, compiled = setup
            if setup in skipped:
                continue
            folder = f"{work.name}/{batch}-{loss}-{compiled}"
            try:
                if loss == "tutorial":
                    result = measure(tutorial_model(), padded, tutorial_collator, training_arguments(
                        folder, config, batch, total_steps, False, False, device), config)
                else:
                    result = measure(our_model(loss == "chunked"), blocks, training.collate_blocks,
                                     training_arguments(folder, config, batch, total_steps, True, compiled, device),
                                     config, tokens_per_step=batch * context)
            except Exception as error:  # noqa: BLE001 -- torch.compile needs a compiler and a supported platform
                if not compiled:
                    raise
                skipped[setup] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:120]}"
                print(f"  batch {batch}, {loss} loss, compiled: skipped ({skipped[setup]})")
                continue
            results[setup].append(result)
        print(f"  repeat {repeat + 1}/{config.REPEATS}: " + ", ".join(
            f"{batch}/{loss}{'/compiled' if compiled else ''} {runs[-1].tokens_per_second:,.0f}"
            for (batch, loss, compiled), runs in results.items() if len(runs) == repeat + 1)
            + f" tokens/s; peak {peaks[-1] / 1e9:,.0f} GFLOP/s")

    peak = median(peaks)

    def ratio(setup, baseline):
        """Median of the per-repeat ratios of tokens/s (the two measured in the same repeat)."""
        return median([a.tokens_per_second / b.tokens_per_second for a, b in zip(results[setup], results[baseline])])

    headers = ["setup", "batch", "tokens/s (non-padding)", "MFU", "peak memory", "vs stock eager",
               "start-up s", "compiling pays after"]
    rows = []
    for setup in setups:
        batch, loss, compiled = setup
        name = ("tutorial (padded per story, stock loss), eager" if loss == "tutorial" else
                f"ours, {loss} loss, {'compiled' if compiled else 'eager'}")
        if setup in skipped or not results[setup]:
            rows.append([name, batch, "skipped", "–", "–", "–", "–", skipped.get(setup, "")])
            continue
        runs = results[setup]
        speed = median([run.tokens_per_second for run in runs])
        baseline = (batch, "stock", False)
        pays = ""
        if compiled and results.get((batch, loss, False)):
            eager = results[(batch, loss, False)]
            extra = median([run.startup_seconds for run in runs]) - median([run.startup_seconds for run in eager])
            saved = median([run.step_seconds for run in eager]) - median([run.step_seconds for run in runs])
            pays = f"{max(0.0, extra) / saved:,.0f} steps" if saved > 0 else "never (not faster)"
        rows.append([name, batch, f"{speed:,.0f}", f"{flops * speed / peak:.1%}",
                     memory_text(median([run.peak_bytes for run in runs])),
                     f"{ratio(setup, baseline):.2f}x" if results.get(baseline) else "–",
                     f"{median([run.startup_seconds for run in runs]):.1f}", pays])
    notes = [
        f"peak: {peak / 1e9:,.0f} GFLOP/s ({'bf16' if on_cuda else 'fp32'} {size}x{size} matmul, median of "
        f"{config.REPEATS}x5); model {parameters / 1e6:.2f}M parameters, {flops / 1e6:.1f} MFLOP per token",
        f"precision: ours {'bf16/fp16 autocast + tf32' if on_cuda else 'fp32'}, tutorial fp32; chunked loss: "
        f"lmkit/lm_loss.py, {lm_loss.default_chunk_size(device)} tokens per chunk",
        "peak memory: " + ("torch.cuda.max_memory_allocated over the run (weights, optimizer state and all)"
                           if on_cuda else "one training step's peak allocation above its start (activations, "
                           "logits, gradients; not the weights or optimizer state), from torch.profiler"),
        "start-up s: from train() to the end of the warm-up steps, less those steps at the timed pace (compiling, "
        "mostly); compiling pays after: the extra start-up over the eager row with the same loss, divided by the "
        "time it saves per step",
        f"tokenize + pack {train_path.name} (ours, fresh cache): {median(pack_seconds):.2f} s; "
        f"tutorial padded tokenization: {median(pad_seconds):.2f} s",
        f"data: {sample_blocks:,} packed blocks, {sample_stories:,} stories, repeated to fill the steps; tutorial: "
        f"{real_per_story:.0f} real tokens per story on average, {truncated:.1%} of them cut at {context} tokens "
        f"({padding_share:.1%} padding)",
        "MFU counts real tokens only; vs stock eager: median of the per-repeat ratios against the same batch's "
        "stock-loss eager row, measured back to back",
    ]
    report(__file__, headers, rows, notes, enabled=config.RECORD)
    work.cleanup()


if __name__ == "__main__":
    run_script(main, globals())
