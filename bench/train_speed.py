"""Training throughput: this kit's data path and model against the way a typical tutorial does it.

    python bench/train_speed.py                     # about 2-3 minutes on 2 CPU cores
    python bench/train_speed.py --steps=20 --repeats=5
    python bench/train_speed.py --record=false      # print the table only

"ours" is train_model.py exactly: stories tokenized with datasets.map and packed into full blocks
(no padding), GPT-2 with exact GELU and PyTorch's fused attention, Trainer (fp32 on CPU, bf16 + tf32
on CUDA). "tutorial" tokenizes each story alone, padded to CONTEXT_LENGTH, uses
DataCollatorForLanguageModeling and a stock GPT2Config (gelu_new, dropout 0.1), Trainer, fp32.
Both use the default architecture with a 30,000-word output layer, the size that dominates the cost.
Throughput counts only real (non-padding) tokens; MFU is against a dense matmul measured in the same run.
Appends the table to BENCHMARKS.md.
"""

TRAIN_FILE = ""  # stories to train on ("" = the bundled sample, data/tinystories-sample/train.txt.gz)
TOKENIZER_DIR = ""  # a trained tokenizer ("" = train one on TRAIN_FILE into a temporary folder, ~1 s)
VOCAB_SIZE = 30000  # width of the output layer; the sample's tokenizer has fewer words, its ids all fit
BATCH_SIZE = 16  # blocks (ours) or stories (tutorial) per step
STEPS = 8  # timed steps per measurement
WARMUP_STEPS = 2  # untimed steps before them (allocator, thread pools, first-step set-up)
REPEATS = 3  # measurements per setup; the table quotes medians
MATMUL_SIZE = 0  # side of the square matmuls that measure peak FLOP/s (0 = 2048 on CPU, 8192 on a GPU)
WHOLE_STORIES = True  # regroup the sample's paragraphs into its stories (see whole_stories) before both setups
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # same seed, same batches and initial weights in every repeat

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: common, train_model, ...

from _bench import data_file, matmul_peak, median, report  # noqa: E402
from common import UserError, configure, load_stories, load_tokenizer, open_text, pick_device, run_script  # noqa: E402


class WideVocabulary:
    """The tokenizer as build_model sees it, but `len()` says VOCAB_SIZE: build_model sizes the model
    from len(tokenizer), so this builds train_model's exact model with a 30k output layer."""

    def __init__(self, tokenizer, size):
        self._tokenizer, self._size = tokenizer, size

    def __len__(self):
        return self._size

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def whole_stories(path, folder):
    """The sample with its stories marked: it puts a blank line between the paragraphs of a story and
    a bare line break between stories, so as loaded (blank lines separate stories) every paragraph
    would count as a story and the tutorial would pad far more than it does on the real data set."""
    stories, paragraphs, previous_blank = [], [], True
    with open_text(path) as handle:
        text = handle.read()
    for line in text.splitlines():
        if not line.strip():
            previous_blank = True
            continue
        if not previous_blank and paragraphs:  # a line straight after another one starts a story
            stories.append("\n\n".join(paragraphs))
            paragraphs = []
        paragraphs.append(line.strip())
        previous_blank = False
    stories.append("\n\n".join(paragraphs))
    marked = Path(folder) / f"{Path(path).name.split('.')[0]}-stories.txt"
    marked.write_text("\n<|endoftext|>\n".join(stories) + "\n", encoding="utf-8")
    return marked


def step_clock():
    """A TrainerCallback that notes the time at the end of every optimizer step."""
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.step_ends = []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():  # the GPU may still be working through the step
                torch.cuda.synchronize()
            self.step_ends.append(time.perf_counter())

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


def training_arguments(output_dir, config, total_steps, ours, on_cuda):
    import torch
    from transformers import TrainingArguments
    mixed = dict(bf16=on_cuda and torch.cuda.is_bf16_supported(),
                 fp16=on_cuda and not torch.cuda.is_bf16_supported(), tf32=on_cuda or None) if ours else {}
    return TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=config.BATCH_SIZE, max_steps=total_steps,
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, seed=config.SEED, use_cpu=not on_cuda, dataloader_pin_memory=on_cuda,
        remove_unused_columns=not ours,  # as train_model.py (ours) and as the Trainer's default (tutorial)
        **({"learning_rate": 2e-3, "adam_beta2": 0.95, "weight_decay": 0.1, "lr_scheduler_type": "cosine"}
           if ours else {}), **mixed)


def measure(model, dataset, collator, args, config):
    """Real tokens per second over the timed steps of one short Trainer run."""
    from transformers import Trainer
    clock = step_clock()
    counts = count_real_tokens(model)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[clock])
    with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its own summary dict
        trainer.train()
    if len(clock.step_ends) != config.WARMUP_STEPS + config.STEPS or len(counts) != len(clock.step_ends):
        raise RuntimeError(f"expected {config.WARMUP_STEPS + config.STEPS} steps, saw {len(clock.step_ends)} "
                           f"steps and {len(counts)} forward passes")
    seconds = clock.step_ends[-1] - clock.step_ends[config.WARMUP_STEPS - 1] if config.WARMUP_STEPS else \
        clock.step_ends[-1] - clock.step_ends[0]  # with no warm-up the first step is left out of the timing
    timed_counts = counts[config.WARMUP_STEPS:] if config.WARMUP_STEPS else counts[1:]
    return sum(timed_counts) / seconds


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


def main(config):
    import datasets
    import torch
    import transformers
    from transformers import DataCollatorForLanguageModeling, GPT2Config, GPT2LMHeadModel, set_seed

    import train_model
    import train_tokenizer

    if min(config.BATCH_SIZE, config.STEPS, config.REPEATS) < 1 or config.WARMUP_STEPS < 0:
        raise UserError("BATCH_SIZE, STEPS and REPEATS must be at least 1, WARMUP_STEPS at least 0")
    if config.WARMUP_STEPS == 0 and config.STEPS < 2:
        raise UserError("with WARMUP_STEPS=0 the first step is not timed: give STEPS of at least 2")
    train_path = data_file(config.TRAIN_FILE, "train")
    work = tempfile.TemporaryDirectory(prefix="bench-train-speed-")
    if config.WHOLE_STORIES:
        train_path = whole_stories(train_path, work.name)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()  # the stock config's warnings (bos/eos ids 50256 > vocabulary)
    device = pick_device()
    on_cuda = device == "cuda"

    if config.TOKENIZER_DIR:
        tokenizer = load_tokenizer(config.TOKENIZER_DIR)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            train_tokenizer.main(configure(vars(train_tokenizer),
                                           [f"--dataset={train_path}", f"--tokenizer_dir={work.name}/tokenizer"]))
        tokenizer = load_tokenizer(f"{work.name}/tokenizer")
    if len(tokenizer) > config.VOCAB_SIZE:
        raise UserError(f"the tokenizer has {len(tokenizer):,} tokens, more than VOCAB_SIZE={config.VOCAB_SIZE:,}")
    model_config = configure(vars(train_model), [f"--batch_size={config.BATCH_SIZE}"])
    context = model_config.CONTEXT_LENGTH

    # Tokenizing: ours (map + pack, as train_model.py) and the tutorial's padded map, each from a
    # fresh cache folder, REPEATS times.
    pack_seconds, pad_seconds = [], []
    for _ in range(config.REPEATS):
        stories = fresh_stories(train_path, work.name)
        started = time.perf_counter()
        blocks = train_model.tokenize_and_pack(stories, tokenizer, context, None)
        pack_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        padded = tutorial_tokenize(stories, tokenizer, context)
        pad_seconds.append(time.perf_counter() - started)
    real_per_story = sum(sum(mask) for mask in padded["attention_mask"]) / len(padded)
    padding_share = 1 - real_per_story / context
    truncated = sum(1 for mask in padded["attention_mask"] if mask[-1] == 1) / len(padded)
    needed = (config.WARMUP_STEPS + config.STEPS) * config.BATCH_SIZE
    if len(blocks) < needed or len(padded) < needed:
        raise UserError(f"{train_path} gives {len(blocks)} blocks and {len(padded)} stories; "
                        f"{needed} are needed for {config.WARMUP_STEPS + config.STEPS} steps of {config.BATCH_SIZE}")

    def our_model():
        set_seed(config.SEED)
        return train_model.build_model(model_config, WideVocabulary(tokenizer, config.VOCAB_SIZE))

    def tutorial_model():
        set_seed(config.SEED)
        return GPT2LMHeadModel(GPT2Config(vocab_size=config.VOCAB_SIZE, n_positions=context,
                                          n_embd=model_config.N_EMBD, n_layer=model_config.N_LAYER,
                                          n_head=model_config.N_HEAD))

    tutorial_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)  # pad labels become -100
    probe = our_model()
    parameters = sum(p.numel() for p in probe.parameters())
    flops = flops_per_token(probe, context)
    del probe
    total_steps = config.WARMUP_STEPS + config.STEPS
    size = config.MATMUL_SIZE or (8192 if on_cuda else 2048)
    dtype = torch.bfloat16 if on_cuda else torch.float32
    print(f"device {device}, torch threads {torch.get_num_threads()}; model {parameters / 1e6:.2f}M parameters "
          f"(vocabulary {config.VOCAB_SIZE:,}), {flops / 1e6:.1f} MFLOP per token; "
          f"{config.REPEATS} x {config.STEPS} timed steps of {config.BATCH_SIZE} x {context}")

    ours, tutorial, ratios, peaks = [], [], [], []
    for repeat in range(config.REPEATS):
        peaks.append(matmul_peak(device, dtype, size))
        ours.append(measure(our_model(), blocks, train_model.collate_blocks,
                            training_arguments(f"{work.name}/ours", config, total_steps, True, on_cuda), config))
        tutorial.append(measure(tutorial_model(), padded, tutorial_collator,
                                training_arguments(f"{work.name}/tutorial", config, total_steps, False, on_cuda),
                                config))
        ratios.append(ours[-1] / tutorial[-1])
        print(f"  repeat {repeat + 1}/{config.REPEATS}: ours {ours[-1]:,.0f}, tutorial {tutorial[-1]:,.0f} "
              f"real tokens/s; peak {peaks[-1] / 1e9:,.0f} GFLOP/s")

    peak = median(peaks)
    headers = ["setup", "tokens/s (non-padding)", "padding share", "MFU", "ratio vs tutorial"]
    rows = [
        ["ours (packed, train_model.py)", f"{median(ours):,.0f}", "0.0%", f"{flops * median(ours) / peak:.1%}",
         f"{median(ratios):.2f}x"],
        ["tutorial (padded per story)", f"{median(tutorial):,.0f}", f"{padding_share:.1%}",
         f"{flops * median(tutorial) / peak:.1%}", "1.00x"],
    ]
    notes = [
        f"peak: {peak / 1e9:,.0f} GFLOP/s ({'bf16' if on_cuda else 'fp32'} {size}x{size} matmul, median of "
        f"{config.REPEATS}x5); model {parameters / 1e6:.2f}M parameters, {flops / 1e6:.1f} MFLOP per token",
        f"precision: ours {'bf16/fp16 autocast + tf32' if on_cuda else 'fp32'}, tutorial fp32; no compile",
        f"tokenize + pack {train_path.name} (ours, fresh cache): {median(pack_seconds):.2f} s; "
        f"tutorial padded tokenization: {median(pad_seconds):.2f} s",
        f"tutorial: {len(padded):,} stories of {real_per_story:.0f} real tokens on average, "
        f"{truncated:.1%} of them cut at {context} tokens"
        + ("; paragraphs regrouped into whole stories (WHOLE_STORIES)" if config.WHOLE_STORIES else
           "; every blank-line paragraph counted as a story"),
        "MFU counts real tokens only; ratio: median of the per-repeat ratios (ours / tutorial, back to back)",
    ]
    report(__file__, headers, rows, notes, enabled=config.RECORD)
    work.cleanup()


if __name__ == "__main__":
    run_script(main, globals())
