"""Continue prompts with the model that train_model.py saved.

    python generate.py                                      # the three default prompts
    python generate.py --prompt="tom saw a cat in the yard" --num_samples=3
    python generate.py --temperature=0 --max_new_tokens=100  # greedy

Next: pilish_generate.py, which makes the same model write Pilish.
"""

MODEL_DIR = "model"  # from train_model.py
PROMPTS = ["once upon a time", "the king and the queen had a silly day", "tom saw a cat in the yard"]  # --prompts="a|b"
PROMPT = ""  # one prompt, replacing PROMPTS
MAX_NEW_TOKENS = 200  # longest continuation, in tokens (a story ends earlier at <|endoftext|>)
TEMPERATURE = 0.8  # lower is safer and duller; 0 = greedy
TOP_K = 50  # sample among the K likeliest words (0 = all)
TOP_P = 0.95  # ... and among the fewest words covering this much probability (1.0 = all)
NUM_SAMPLES = 1  # continuations per prompt
SEED = 42  # same seed, same text
THREADS = 0  # torch's CPU threads (0 = one per core other programs leave idle; OMP_NUM_THREADS also sets it)

import sys
import time

from lmkit.folders import load_model, use_cpu_threads
from lmkit.settings import UserError, at_least, check_seed_and_threads, next_command, run_script, within
from lmkit.text import detokenize, split_words, warn_unknown_words

BOLD, PLAIN = "\033[1m", "\033[0m"
MAX_SAMPLES = 1000  # continuations per prompt in one run: they are generated as one batch


def encode_prompts(tokenizer, prompts, device):
    """Each prompt after an <|endoftext|> (as every story starts in training), left-padded into one batch."""
    tokenizer.padding_side = "left"  # new tokens go on the right, so padding goes on the left
    texts = [tokenizer.eos_token + prompt for prompt in prompts]
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)


def format_sample(prompt_text, full_text, bold):
    """The text with its prompt part in bold (on a terminal)."""
    if bold and full_text.startswith(prompt_text) and prompt_text:
        return BOLD + prompt_text + PLAIN + full_text[len(prompt_text):]
    return full_text


def generate(model, tokenizer, prompts, config):
    """A list (one per prompt) of lists (one per sample) of (the prompt as typed, it and its continuation);
    and the tokens made."""
    from transformers import set_seed
    set_seed(config.SEED)
    batch = encode_prompts(tokenizer, prompts, model.device)
    prompt_length = batch["input_ids"].shape[1]
    room = model.config.n_positions - prompt_length  # GPT-2 has no positions past its context
    if room < 1:
        raise UserError(f"the prompt is {prompt_length} tokens, as long as the model's whole context")
    if config.MAX_NEW_TOKENS > room:
        print(f"note: the model's context ends after {room} new tokens here", file=sys.stderr)
    sampling = config.TEMPERATURE > 0
    output = model.generate(
        **batch, do_sample=sampling, max_new_tokens=min(config.MAX_NEW_TOKENS, room),
        temperature=config.TEMPERATURE if sampling else None, top_k=config.TOP_K if sampling else None,
        top_p=config.TOP_P if sampling else None, num_return_sequences=config.NUM_SAMPLES,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, use_cache=True)
    results, new_tokens = [], 0
    for index, sequence in enumerate(output):
        continuation = sequence[prompt_length:].tolist()
        if tokenizer.eos_token_id in continuation:  # a story ends at its first <|endoftext|>
            continuation = continuation[:continuation.index(tokenizer.eos_token_id) + 1]
        new_tokens += len(continuation)
        if index % config.NUM_SAMPLES == 0:
            results.append([])
        prompt = prompts[index // config.NUM_SAMPLES]
        prompt_words = split_words(tokenizer, prompt)[0]
        # the prompt as the user typed it (the vocabulary may be lowercase), then what the model wrote,
        # spaced as the decoder spaces it after the prompt's last word
        prompt_shown = len(detokenize(tokenizer, [], prompt_words))
        continuation_text = detokenize(tokenizer, continuation, prompt_words)[prompt_shown:]
        results[-1].append((prompt.strip(), prompt.strip() + continuation_text))
    return results, new_tokens


def check_settings(config):
    at_least(config, 1, "MAX_NEW_TOKENS")
    within(config, "NUM_SAMPLES", 1, MAX_SAMPLES)
    at_least(config, 0, "TOP_K")
    if config.TEMPERATURE != 0:  # 0 = greedy; near 0 the scaled scores overflow to inf
        within(config, "TEMPERATURE", 0.01, 100)
    within(config, "TOP_P", 0, 1, low_open=True)
    check_seed_and_threads(config)


def main(config):
    check_settings(config)
    prompts = [config.PROMPT] if config.PROMPT else list(config.PROMPTS)
    if not prompts:
        raise UserError("no prompts: give one with --prompt=... or several with --prompts=a|b")
    model, tokenizer = load_model(config.MODEL_DIR)
    use_cpu_threads(config.THREADS, model.device.type)
    warn_unknown_words(tokenizer, "\n".join(prompts))  # one line for all the prompts

    started = time.perf_counter()
    results, new_tokens = generate(model, tokenizer, prompts, config)
    seconds = time.perf_counter() - started
    bold = sys.stdout.isatty()
    for samples in results:
        for number, (prompt_text, full_text) in enumerate(samples, 1):
            label = f"[{number}] " if config.NUM_SAMPLES > 1 else ""
            print(label + format_sample(prompt_text, full_text, bold))
        print()
    print(f"{new_tokens} tokens in {seconds:.1f} s ({new_tokens / seconds:,.0f} tokens/s) on {model.device.type} -- "
          f"next: " + next_command("pilish_generate.py", MODEL_DIR=(config.MODEL_DIR, "model")), file=sys.stderr)


if __name__ == "__main__":
    run_script(main, globals(), memory_hint="lower NUM_SAMPLES or MAX_NEW_TOKENS")
