"""generate.py: sampling from the tiny model, prompts and their padding, settings that reach generate."""

import io
import re
import subprocess
import sys

import pytest
import torch
from transformers import pipeline

import generate
from conftest import ROOT, run_main
from lmkit.folders import load_model
from lmkit.settings import UserError, configure
from lmkit.text import detokenize, split_words
from pilish.tokens import token_text


def settings(model_dir, *argv):
    return configure(vars(generate), [f"--model_dir={model_dir}", *argv])


def test_same_seed_same_text_and_prompt_first(model_dir, capsys):
    run_main(generate, [f"--model_dir={model_dir}", "--prompt=once upon a time", "--seed=1", "--max_new_tokens=30"])
    first = capsys.readouterr().out
    run_main(generate, [f"--model_dir={model_dir}", "--prompt=once upon a time", "--seed=1", "--max_new_tokens=30"])
    assert capsys.readouterr().out == first
    assert first.startswith("once upon a time") and len(first.strip()) > len("once upon a time")
    assert not any(f" {mark}" in first for mark in ".,!?")
    assert "\033[" not in first  # captured output is no terminal: no bold


def test_default_prompts_and_numbered_samples(model_dir, capsys):
    run_main(generate, [f"--model_dir={model_dir}", "--num_samples=2", "--max_new_tokens=10"])
    out = capsys.readouterr().out
    for prompt in generate.PROMPTS:
        assert f"[1] {prompt}" in out and f"[2] {prompt}" in out


def test_generation_stops_at_endoftext(model_dir):
    model, tokenizer = load_model(model_dir)
    # every corpus story ends with this sentence, so the model has learnt that <|endoftext|> follows it
    prompt = "the grasshoppers were not disappointed, and everything was sunny."
    results, new_tokens = generate.generate(model, tokenizer, [prompt], settings(model_dir, "--max_new_tokens=15", "--num_samples=4"))
    assert new_tokens < 4 * 15  # at least one sample stopped early, at its end-of-text
    for prompt_text, full_text in results[0]:
        assert "<|endoftext|>" not in full_text and "[PAD]" not in full_text
        assert full_text.startswith(prompt)


def test_batch_of_prompts_of_different_lengths_is_left_padded(model_dir):
    model, tokenizer = load_model(model_dir)
    config = settings(model_dir, "--temperature=0", "--max_new_tokens=12")
    prompts = ["once", "lily said, \"let's play with the red ball"]
    batch, _ = generate.generate(model, tokenizer, prompts, config)
    alone = [generate.generate(model, tokenizer, [prompt], config)[0][0] for prompt in prompts]
    assert [samples[0] for samples in batch] == [samples[0] for samples in alone]  # padding changes nothing


def test_out_of_vocabulary_prompt_words_warn_but_generate(model_dir, capsys):
    run_main(generate, [f"--model_dir={model_dir}", "--prompt=the zyzzyva saw a cat", "--max_new_tokens=5"])
    captured = capsys.readouterr()
    assert "zyzzyva" in captured.err and "[UNK]" in captured.err
    assert captured.out.startswith("the")


def test_bold_prompt_only_on_a_terminal(model_dir, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    run_main(generate, [f"--model_dir={model_dir}", "--prompt=tom saw a cat", "--max_new_tokens=5"])
    assert terminal.getvalue().startswith(generate.BOLD + "tom saw a cat" + generate.PLAIN)


def test_missing_model_says_which_script_to_run(tmp_path):
    with pytest.raises(UserError, match="run train_model.py first"):
        run_main(generate, [f"--model_dir={tmp_path / 'nonexistent'}"])
    (tmp_path / "config.json").write_text("{}")  # an interrupted copy: config but no weights
    with pytest.raises(UserError, match="no complete model .* run train_model.py first"):
        run_main(generate, [f"--model_dir={tmp_path}"])
    result = subprocess.run([sys.executable, "generate.py", "--model_dir=/nonexistent"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "train_model.py" in result.stderr


PIPELINE_PROMPTS = ["Once upon a time there was", "The cat", 'Lily said, "Let\'s play', "Tom's mom smiled."]


def test_pipeline_continues_with_a_space_and_reads_like_generate(model_dir):
    """The text-generation pipeline prints prompt + tokenizer.decode(new tokens): no glued words,
    and the same text as the scripts' detokenize gives for the same tokens."""
    model, tokenizer = load_model(model_dir)
    vocabulary = {token_text(token) for token in tokenizer.get_vocab()}
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    word = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
    for prompt in PIPELINE_PROMPTS:
        prompt_words = set(word.findall(prompt.lower()))
        for options in (dict(do_sample=False), dict(do_sample=True, top_k=20)):
            torch.manual_seed(0)
            text = generator(prompt, max_new_tokens=12, **options)[0]["generated_text"]
            assert text.startswith(prompt)
            glued = [w for w in word.findall(text.lower()) if w not in vocabulary and w not in prompt_words]
            assert not glued, f"glued words {glued} in {text!r}"
        # greedy: the pipeline's continuation is what generate.py would print after the prompt
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        new = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]
        continuation = generator(prompt, max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"]
        assert continuation == tokenizer.decode(new, skip_special_tokens=True)
        words = split_words(tokenizer, prompt)[0]
        assert detokenize(tokenizer, [], words) + continuation == detokenize(tokenizer, new, words)


def spy_on_generate(monkeypatch, module, model_dir):
    """The keyword arguments of every model.generate call that `module`'s main makes (the calls go through)."""
    model, tokenizer = load_model(model_dir)
    calls, real_generate = [], model.generate

    def recording_generate(*args, **kwargs):
        calls.append(kwargs)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    monkeypatch.setattr(module, "load_model", lambda folder, device=None: (model, tokenizer))
    return calls


def test_sampling_settings_reach_generate(model_dir, monkeypatch, capsys):
    calls = spy_on_generate(monkeypatch, generate, model_dir)
    run_main(generate, [f"--model_dir={model_dir}", "--prompts=tom saw|lily", "--temperature=0.7", "--top_k=7",
                        "--top_p=0.85", "--num_samples=2", "--max_new_tokens=9"])
    assert len(calls) == 1
    call = calls[0]
    assert (call["do_sample"], call["temperature"], call["top_k"], call["top_p"]) == (True, 0.7, 7, 0.85)
    assert (call["num_return_sequences"], call["max_new_tokens"]) == (2, 9)
    assert call["input_ids"].shape[0] == 2  # both prompts in one batch
    assert call["use_cache"] is True  # the KV cache asked for, whatever config.json was saved with
    out = capsys.readouterr().out
    assert out.count("[1] ") == out.count("[2] ") == 2
    calls.clear()
    run_main(generate, [f"--model_dir={model_dir}", "--prompt=tom saw", "--temperature=0", "--max_new_tokens=40"])
    call = calls[0]
    assert call["do_sample"] is False and call["top_k"] is None and call["top_p"] is None
    prompt_length = call["input_ids"].shape[1]
    assert call["max_new_tokens"] == 32 - prompt_length  # capped at the model's context


def test_prompts_follow_an_endoftext_and_are_left_padded(model_dir):
    model, tokenizer = load_model(model_dir, device="cpu")
    batch = generate.encode_prompts(tokenizer, ["tom saw a cat", "once"], "cpu")
    eot, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    long_ids = tokenizer.convert_tokens_to_ids(["▁tom", "▁saw", "▁a", "▁cat"])
    assert batch["input_ids"][0].tolist() == [eot, *long_ids]
    assert batch["input_ids"][1].tolist() == [pad, pad, pad, eot, tokenizer.convert_tokens_to_ids("▁once")]
    assert batch["attention_mask"].tolist() == [[1] * 5, [0, 0, 0, 1, 1]]


def test_a_prompt_as_long_as_the_context_is_an_error(model_dir):
    model, tokenizer = load_model(model_dir, device="cpu")
    with pytest.raises(UserError, match="as long as the model's whole context"):
        generate.generate(model, tokenizer, [" ".join(["cat"] * 31)], settings(model_dir))
    prompt = " ".join(["cat"] * 30)
    results, new_tokens = generate.generate(model, tokenizer, [prompt], settings(model_dir, "--temperature=0"))
    # one token of room: still a continuation, of exactly that one token (a count of "cat" >= 30 held
    # whether or not anything was generated)
    assert new_tokens == 1 and results[0][0][1].startswith(prompt)


def test_no_prompts_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no prompts"):
        run_main(generate, [f"--model_dir={tmp_path}", "--prompts=[]"])


def test_the_prompt_is_printed_as_typed_and_the_continuation_spaced_after_it(model_dir, capsys):
    typed = 'Lily said, "Let\'s play with the Ball!" Then Tom'
    run_main(generate, [f"--model_dir={model_dir}", f"--prompt={typed}", "--max_new_tokens=8", "--seed=3"])
    out = capsys.readouterr().out.strip()
    assert out.startswith(typed) and out[len(typed):].strip()  # the vocabulary is lowercase; the echo is not
    model, tokenizer = load_model(model_dir)
    lowered = settings(model_dir, f"--prompt={typed}", "--max_new_tokens=8", "--seed=3")
    prompt_text, full_text = generate.generate(model, tokenizer, [typed], lowered)[0][0][0]
    assert prompt_text == typed and full_text == out
    # after an opening quote the first new word is glued to it, as the decoder glues it in a whole text
    _, quoted = generate.generate(model, tokenizer, ['Tom said, "'], settings(model_dir, "--max_new_tokens=4"))[0][0][0]
    assert quoted.startswith('Tom said, "') and quoted[len('Tom said, "')].isalpha()


def test_pipeline_keeps_the_end_of_a_prompt_longer_than_the_context(model_dir):
    """The saved tokenizer knows the model's context, so pipeline's handle_long_generation="hole" works
    (without it GPT-2 has no positions past its context: an IndexError)."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model, _ = load_model(model_dir)
    assert tokenizer.model_max_length == model.config.n_positions == 32
    assert tokenizer.truncation_side == "left"
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    prompt = "the cat sat in the park and the dog ran to the tree . " * 6  # far past 32 tokens
    text = generator(prompt, max_new_tokens=5, do_sample=False, handle_long_generation="hole")[0]["generated_text"]
    assert text.startswith(prompt) and len(text) > len(prompt)
    with pytest.raises(IndexError):  # what the hole is for
        generator(prompt, max_new_tokens=5, do_sample=False)


def test_pipeline_after_an_opening_quote_writes_words_with_the_documented_space(model_dir):
    model, tokenizer = load_model(model_dir)
    vocabulary = {token_text(token) for token in tokenizer.get_vocab()}
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    prompt = 'Lily said, "'
    text = generator(prompt, max_new_tokens=6, do_sample=False)[0]["generated_text"]
    continuation = text[len(prompt):]
    assert text.startswith(prompt) and continuation.startswith(" ")  # new words decoded alone (README)
    words = re.findall(r"[a-z]+(?:'[a-z]+)*", continuation)
    assert words and all(word in vocabulary for word in words)


def test_the_seed_setting_is_the_seed_used(model_dir, capsys):
    """The same --seed gives the same text (above); another seed, another text: --seed reaches set_seed."""
    texts = []
    for seed in (1, 2, 1):
        run_main(generate, [f"--model_dir={model_dir}", "--prompt=once upon a time", f"--seed={seed}",
                            "--max_new_tokens=30", "--temperature=1.5", "--top_k=0", "--top_p=1"])
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[2] != texts[1]


def test_the_hint_names_the_next_script_with_this_model(model_dir, capsys):
    run_main(generate, [f"--model_dir={model_dir}", "--prompt=once upon a time", "--max_new_tokens=3"])
    assert f"next: python pilish_generate.py --model_dir={model_dir}" in capsys.readouterr().err


def test_finished_rows_give_no_attention_mask_warning(model_dir):
    """generate() leaves the all-ones mask out; rows that ended early then feed pad tokens, and the
    library warned that the input "may be padded" (we always pass the mask): that warning is dropped."""
    import logging

    from lmkit.folders import load_model
    logger = logging.getLogger("transformers.modeling_utils")
    for existing in [f for f in logger.filters if type(f).__name__ == "_DropMessages"]:
        logger.removeFilter(existing)  # from an earlier test in this process: start as a fresh run does
    load_model(model_dir, "cpu")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "We strongly recommend passing in an "
                               "`attention_mask` since your input_ids may be padded.", None, None)
    assert not logger.filter(record)
    assert logger.filter(logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "another", None, None))


def test_unknown_words_of_all_prompts_are_one_warning(model_dir, capsys):
    run_main(generate, [f"--model_dir={model_dir}", "--prompts=zzqx saw|lily zzqx|qqzy", "--max_new_tokens=2"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: not in the vocabulary, so the model reads them as [UNK]: zzqx, qqzy"]
