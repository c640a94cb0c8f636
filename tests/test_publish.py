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
