"""lmkit.publish: the model card and what publishing a model folder leaves out."""

import json
import re

from lmkit.publish import PUBLISH_IGNORE, model_card, publishable_files, write_ignore_file


def test_upload_list_leaves_out_checkpoints_and_resume_files(model_dir, tmp_path):
    files = publishable_files(model_dir)
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "ngrams.pt"} <= set(files)
    assert not [name for name in files if name.startswith(("checkpoint-", "incomplete-")) or
                name.endswith("training_args.bin")]
    assert any((model_dir / name).is_dir() for name in ("checkpoint-60", "checkpoint-48"))  # they are there
    # the same choice for a folder made by hand, subfolders included
    for name in ("checkpoint-7/optimizer.pt", "incomplete-checkpoint-9/model.safetensors", "_tmp",
                 "training_args.bin", "model.safetensors", "notes/x.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert publishable_files(tmp_path) == ["model.safetensors", "notes/x.txt"]


def test_ignore_file_lists_every_pattern(tmp_path):
    write_ignore_file(tmp_path)
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert "checkpoint-*/" in lines and "training_args.bin" in lines and len(lines) == len(PUBLISH_IGNORE)


def test_model_card_of_the_trained_model(model_dir):
    card = (model_dir / "README.md").read_text()
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert card.startswith("---\nlanguage: en\nlibrary_name: transformers\npipeline_tag: text-generation")
    assert f"validation loss {metrics['valid_loss']:.3f}" in card
    assert f"{metrics['parameters']:,} parameters ({metrics['non_embedding_parameters']:,} outside" in card
    assert "| N_EMBD | 32 |" in card and "| CONTEXT_LENGTH | 32 |" in card and "| MAX_STEPS | 60 |" in card
    sample = re.search(r'Greedy continuation of "once upon a time" \(.*no_repeat_ngram_size=3`\):\n\n> (.+)\n',
                       card).group(1)
    assert sample.startswith("once upon a time") and len(sample.split()) > 8
    assert f'pipeline("text-generation", model="{model_dir.name}")' in card and "handle_long_generation" in card


def test_model_card_names_a_hub_data_set_and_not_a_local_one():
    facts = dict(name="m", settings={"CONTEXT_LENGTH": 8}, parameters=10, non_embedding=5, vocabulary=7, steps=1,
                 tokens_seen=8, valid_loss=2.0, valid_blocks=3, sample_prompt="hi", sample="hi there")
    assert "datasets: [roneneldan/TinyStories]" in model_card(dataset="roneneldan/TinyStories", **facts)
    assert "datasets:" not in model_card(dataset="sample", **facts)
    assert "perplexity 7.4" in model_card(dataset="sample", **facts)
    assert "\n> hi there\n" in model_card(dataset="sample", **facts)
    assert "\n> (none: the context is too short" in model_card(dataset="sample", **{**facts, "sample": ""})


# ---- pinned by mutation testing (issue 23)

ALL_SHOWN = {"N_LAYER": 2, "N_HEAD": 4, "N_EMBD": 64, "CONTEXT_LENGTH": 128, "BATCH_SIZE": 16, "GRADIENT_ACCUMULATION": 2,
             "LEARNING_RATE": 0.001, "WARMUP": 0.05, "WEIGHT_DECAY": 0.1, "DROPOUT": 0.0, "MAX_STEPS": 500,
             "NUM_EPOCHS": 1.0, "SEED": 7, "MODEL_DIR": "not shown"}


def test_model_card_shows_every_training_setting_in_order_and_how_to_use_it():
    card = model_card(name="tiny", dataset="sample", settings=ALL_SHOWN, parameters=1234567, non_embedding=89012,
                      vocabulary=30000, steps=500, tokens_seen=1024000, valid_loss=1.5, valid_blocks=40,
                      sample_prompt="once upon a time", sample="once upon a time there was")
    lines = card.splitlines()
    assert [line for line in lines if line.startswith("#")] == [
        "# tiny: a tiny GPT-2 that writes TinyStories, with a word-level tokenizer", "## Training", "## Sample",
        "## Use", "# a prompt longer than the context: keep its end"]
    assert lines[lines.index("| setting | value |") + 1] == "| --- | --- |"  # a Markdown table's header
    rows = [line for line in card.splitlines() if line.startswith("| ") and not line.startswith(("| setting", "| ---"))]
    assert rows == [f"| {key} | {value} |" for key, value in ALL_SHOWN.items() if key != "MODEL_DIR"]
    assert "- data: `sample` (the TinyStories sample bundled with the kit)" in card.splitlines()
    assert "- 1,234,567 parameters (89,012 outside the embeddings), a 30,000-word vocabulary" in card
    assert "- 500 steps, 1,024,000 tokens seen" in card
    assert "- validation loss 1.500 (perplexity 4.5) on 40 blocks of 128 tokens" in card
    assert card.splitlines()[:6] == ["---", "language: en", "library_name: transformers",
                                     "pipeline_tag: text-generation", "tags: [gpt2, tinystories, pilish, word-level]",
                                     "---"]
    assert ('```python\nfrom transformers import pipeline\ngenerate = pipeline("text-generation", model="tiny")\n'
            'print(generate("once upon a time", max_new_tokens=50, do_sample=True)[0]["generated_text"])\n'
            '# a prompt longer than the context: keep its end\n'
            'generate(long_prompt, max_new_tokens=50, handle_long_generation="hole")\n```\n\n'
            'or, with the kit: `python pilish_generate.py --model_dir=tiny`') in card
    assert "\n> once upon a time there was\n" in card and card.endswith("(`said, \" you`).\n")
    other = model_card(name="t", dataset="stories.txt", settings={}, parameters=1, non_embedding=1, vocabulary=1,
                       steps=1, tokens_seen=1, valid_loss=0.0, valid_blocks=1, sample_prompt="a", sample="a")
    assert "- data: `stories.txt`\n" in other and "blocks of ? tokens" in other


def test_ignore_file_has_one_pattern_a_line_and_folders_marked(tmp_path):
    write_ignore_file(tmp_path)
    text = (tmp_path / ".gitignore").read_text()
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert text.splitlines() == [p + "/" if p.endswith("-*") else p for p in PUBLISH_IGNORE]


def test_greedy_sample_stops_at_the_end_of_the_context(tokenizer_dir):
    from transformers import AutoTokenizer

    from conftest import tiny_gpt2
    from lmkit.publish import greedy_sample
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = tiny_gpt2(len(tokenizer), n_positions=12, n_embd=16, n_layer=1).train()
    prompt = "the cat saw a big dog in the park"  # 9 words: with <|endoftext|>, 10 of the 12 positions
    text = greedy_sample(model, tokenizer, prompt, new_tokens=40)
    assert text.startswith(prompt) and len(tokenizer(" " + text)["input_ids"]) <= 11
    assert model.training  # put back in the mode it was in
    assert greedy_sample(model.eval(), tokenizer, prompt, new_tokens=1).startswith(prompt) and not model.training


def test_greedy_sample_is_empty_when_the_context_holds_no_more_than_the_prompt(tokenizer_dir):
    """CONTEXT_LENGTH=2 trains; its model card's sample has no room, and the save must not fail there."""
    from transformers import AutoTokenizer

    from conftest import tiny_gpt2
    from lmkit.publish import greedy_sample
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = tiny_gpt2(len(tokenizer), n_positions=5, n_embd=16, n_layer=1)
    assert greedy_sample(model, tokenizer, "once upon a time") == ""  # 5 positions: <|endoftext|> and 4 words
    assert greedy_sample(model, tokenizer, "once upon a") != ""


def test_greedy_sample_asks_for_40_new_tokens_by_default(tokenizer_dir):
    """With room in the context (64 positions, 5 taken by <|endoftext|> and the prompt), the card's sample
    asks generate() for 40 new tokens."""
    from transformers import AutoTokenizer

    from conftest import tiny_gpt2
    from lmkit.publish import greedy_sample
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = tiny_gpt2(len(tokenizer), n_positions=64, n_embd=16, n_layer=1).eval()
    asked, real_generate = [], model.generate

    def recording_generate(*args, **kwargs):
        asked.append(kwargs["max_new_tokens"])
        return real_generate(*args, **kwargs)

    model.generate = recording_generate
    assert greedy_sample(model, tokenizer, "once upon a time").startswith("once upon a time")
    assert asked == [40]


def test_model_card_heading_stands_alone_between_empty_lines():
    card = model_card(name="tiny", dataset="sample", settings={}, parameters=1, non_embedding=1, vocabulary=1, steps=1,
                      tokens_seen=1, valid_loss=0.0, valid_blocks=1, sample_prompt="a", sample="a b")
    lines = card.splitlines()
    heading = lines.index("# tiny: a tiny GPT-2 that writes TinyStories, with a word-level tokenizer")
    assert lines[heading - 2:heading + 3] == ["---", "", lines[heading], "", lines[heading + 2]]
    assert lines[heading + 2].startswith("Trained from scratch with train_model.py")
