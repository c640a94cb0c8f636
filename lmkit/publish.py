"""A model folder ready to share: its model card (README.md) and what publishing it leaves out.

train_model.py keeps its checkpoints where the Trainer does (MODEL_DIR/checkpoint-N), and the Hub's
convention is to leave them out when the folder is published: `Trainer.push_to_hub` uploads with
`ignore_patterns=["_*", "checkpoint-*"]`. PUBLISH_IGNORE is that list plus what else is only for
resuming; `hf upload USER/NAME MODEL_DIR --exclude ...` with it uploads the model, the tokenizer,
the card, the metrics, the loss curve and ngrams.pt (pilish_generate.py's prior).
"""

from pathlib import Path

from lmkit.files import write_text

# Left out when publishing: checkpoints (optimizer state is most of a folder's size), the ones a cut
# save left or --overwrite set aside, the Trainer's pickled arguments (training_run.json says the
# same in JSON), a running job's lock, and what a killed save left behind (lmkit/files.py).
PUBLISH_IGNORE = ["_*", "checkpoint-*", "incomplete-*", "replaced-*", "training_args.bin", "*.lock", ".*.tmp",
                  ".saving-*"]
CARD = "README.md"


def publishable_files(folder):
    """The files of `folder` (relative paths) that `hf upload` / `upload_folder(ignore_patterns=PUBLISH_IGNORE)`
    sends, chosen the way huggingface_hub chooses them."""
    from huggingface_hub.utils import filter_repo_objects
    folder = Path(folder)
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return list(filter_repo_objects(files, ignore_patterns=PUBLISH_IGNORE))


def write_ignore_file(folder):
    """A .gitignore with PUBLISH_IGNORE: what a git push of the folder to the Hub leaves out, as the
    Trainer writes one for its checkpoints."""
    lines = [pattern + "/" if pattern.endswith("-*") else pattern for pattern in PUBLISH_IGNORE]
    write_text(Path(folder, ".gitignore"), "\n".join(lines) + "\n")


def model_card(*, name, dataset, settings, parameters, non_embedding, vocabulary, steps, tokens_seen,
               valid_loss, valid_blocks, sample_prompt, sample):
    """The model card's Markdown: what the model was trained on and how, how well, a sample, how to load it."""
    from_hub = not Path(dataset).expanduser().exists() and dataset != "sample"
    front = ["---", "language: en", "library_name: transformers", "pipeline_tag: text-generation",
             "tags: [gpt2, tinystories, pilish, word-level]"] + (
        [f"datasets: [{dataset}]"] if from_hub else []) + ["---", ""]
    shown = ("N_LAYER", "N_HEAD", "N_EMBD", "CONTEXT_LENGTH", "BATCH_SIZE", "GRADIENT_ACCUMULATION",
             "LEARNING_RATE", "WARMUP", "WEIGHT_DECAY", "DROPOUT", "MAX_STEPS", "NUM_EPOCHS", "SEED")
    rows = [f"| {key} | {settings[key]} |" for key in shown if key in settings]
    table = ["| setting | value |", "| --- | --- |", *rows]
    body = [
        f"# {name}: a tiny GPT-2 that writes TinyStories, with a word-level tokenizer", "",
        "Trained from scratch with train_model.py of the Pilish kit; every token is a whole word or one mark, "
        "so pilish_generate.py can make it write Pilish (word lengths that spell the digits of pi).", "",
        "## Training", "",
        f"- data: `{dataset}`" + (" (the TinyStories sample bundled with the kit)" if dataset == "sample" else ""),
        f"- {parameters:,} parameters ({non_embedding:,} outside the embeddings), a {vocabulary:,}-word vocabulary",
        f"- {steps:,} steps, {tokens_seen:,} tokens seen",
        f"- validation loss {valid_loss:.3f} (perplexity {_perplexity(valid_loss):.1f}) on {valid_blocks:,} "
        f"blocks of {settings.get('CONTEXT_LENGTH', '?')} tokens", "", *table, "",
        "## Sample", "", f"Greedy continuation of \"{sample_prompt}\" (`do_sample=False, no_repeat_ngram_size=3`):", "",
        f"> {sample}" if sample else "> (none: the context is too short to continue the prompt)", "",
        "## Use", "", "```python", "from transformers import pipeline",
        f'generate = pipeline("text-generation", model="{name}")',
        f'print(generate("{sample_prompt}", max_new_tokens=50, do_sample=True)[0]["generated_text"])',
        "# a prompt longer than the context: keep its end",
        'generate(long_prompt, max_new_tokens=50, handle_long_generation="hole")', "```", "",
        f"or, with the kit: `python pilish_generate.py --model_dir={name}` (uses ngrams.pt, its n-gram prior).", "",
        "The tokenizer lowercases and decodes each word with the space before it, so a decoded text starts with "
        "a space and is lowercase; `pipeline` decodes the new words on their own, so after a prompt that ends "
        "in an opening quote the first word keeps its space (`said, \" you`).", "",
    ]
    return "\n".join(front + body)


def _perplexity(loss):
    import math
    return math.exp(loss)


def greedy_sample(model, tokenizer, prompt, new_tokens=40):
    """The model's greedy continuation of `prompt` (after <|endoftext|>, as every story starts), with
    no 3-gram twice (a model this small loops otherwise), as text: deterministic, so the card shows
    what anyone who loads the model gets with the same two settings."""
    import torch

    from lmkit.text import detokenize, split_words
    ids = [tokenizer.eos_token_id, *split_words(tokenizer, prompt)[1]]
    new_tokens = min(new_tokens, model.config.n_positions - len(ids))  # GPT-2 has no positions past its context
    if new_tokens < 1:  # a context too short to hold the prompt and one more token
        return ""
    inputs = torch.tensor([ids], device=model.device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        output = model.generate(inputs, attention_mask=torch.ones_like(inputs), do_sample=False, no_repeat_ngram_size=3,
                                max_new_tokens=new_tokens, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id, use_cache=True)
    model.train(was_training)
    return detokenize(tokenizer, output[0, 1:].tolist())
