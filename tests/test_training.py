"""lmkit.training: loading and packing the stories, the GPT-2, the Trainer's arguments, and what
blocks resuming a saved model."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import corpus
from lmkit import training
from lmkit.data import load_stories


def test_packing_makes_full_blocks_with_endoftext_between_stories(corpus_file, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    stories = load_stories(str(corpus_file)).select(range(30))
    blocks = training.tokenize_and_pack(stories, tokenizer, 16, None)
    stream = [token for story in tokenizer(list(stories["text"]), add_special_tokens=False)["input_ids"]
              for token in story + [tokenizer.eos_token_id]]
    assert all(len(block) == 16 for block in blocks["input_ids"])
    flat = [int(t) for block in blocks["input_ids"] for t in block]
    assert flat == stream[:len(flat)] and len(stream) - len(flat) < 16
    assert tokenizer.pad_token_id not in flat and flat.count(tokenizer.eos_token_id) >= 29


def test_load_splits_holds_out_a_slice_or_takes_the_validation_set(tmp_path):
    data = corpus.write_txt(tmp_path / "train.txt", [f"Story number {i}." for i in range(50)])
    train_set, valid_set = training.load_splits(str(data), "", valid_fraction=0.1, seed=3)
    assert len(valid_set) == 5 and len(train_set) == 45
    assert sorted(list(train_set["text"]) + list(valid_set["text"])) == sorted(f"Story number {i}." for i in range(50))
    again = training.load_splits(str(data), "", valid_fraction=0.1, seed=3)
    assert list(again[1]["text"]) == list(valid_set["text"])  # the seed fixes the slice
    other = corpus.write_txt(tmp_path / "valid.txt", ["Other one.", "Other two."])
    train_set, valid_set = training.load_splits(str(data), str(other), valid_fraction=0.1)
    assert len(train_set) == 50 and list(valid_set["text"]) == ["Other one.", "Other two."]
    for fraction in (0, 1):
        with pytest.raises(ValueError, match="between 0 and 1"):
            training.load_splits(str(data), "", valid_fraction=fraction)


def test_tokenizing_again_is_a_cache_hit(corpus_file, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    stories = load_stories(str(corpus_file)).select(range(50))
    first = training.tokenize_and_pack(stories, tokenizer, 19, None)
    folder = Path(first.cache_files[0]["filename"]).parent
    files = {path: path.stat().st_mtime_ns for path in folder.glob("*.arrow")}
    second = training.tokenize_and_pack(load_stories(str(corpus_file)).select(range(50)), tokenizer, 19, None)
    assert second.cache_files == first.cache_files  # read from the first run's file...
    assert {path: path.stat().st_mtime_ns for path in folder.glob("*.arrow")} == files  # ...and nothing written
    assert [row.tolist() for row in second["input_ids"]] == [row.tolist() for row in first["input_ids"]]
    other = training.tokenize_and_pack(stories, tokenizer, 23, None)  # another block size: packed anew
    assert other.cache_files != first.cache_files and len(other[0]["input_ids"]) == 23


def test_build_model_takes_explicit_sizes_and_ties_the_output_layer():
    model = training.build_model(1000, context_length=16, n_embd=32, n_layer=1, n_head=2, dropout=0.1,
                                 eos_token_id=2, pad_token_id=0)
    c = model.config
    assert (c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head, c.resid_pdrop) == (1000, 16, 32, 1, 2, 0.1)
    assert (c.eos_token_id, c.bos_token_id, c.pad_token_id) == (2, 2, 0)
    assert model.lm_head.weight is model.transformer.wte.weight
    total, non_embedding = training.count_parameters(model)
    assert total - non_embedding == 1000 * 32 + 16 * 32


def test_training_arguments_are_built_once_with_shares_of_the_run(tmp_path):
    args = training.training_arguments(tmp_path, device="cpu", batch_size=8, learning_rate=1e-3, max_steps=50)
    assert (args.eval_steps, args.save_steps, args.logging_steps) == (0.2, 0.2, 0.02)  # 5 evals, ~50 logs
    assert (args.max_steps, args.per_device_train_batch_size, args.learning_rate) == (50, 8, 1e-3)
    assert not args.bf16 and not args.fp16 and args.prediction_loss_only
    assert (args.adam_beta2, args.lr_scheduler_type, args.weight_decay, args.max_grad_norm) == (0.95, "cosine", 0.1, 1.0)
    assert args.use_cpu and args.seed == 42 and args.warmup_steps == 0.02 and args.save_total_limit == 3
    args = training.training_arguments(tmp_path, device="cpu", batch_size=8, learning_rate=1e-3, eval_steps=7,
                                       logging_steps=3)
    assert (args.eval_steps, args.save_steps, args.logging_steps, args.max_steps) == (7, 7, 3, -1)
    args = training.training_arguments(tmp_path, device="cpu", batch_size=8, learning_rate=1e-3, checkpoints=False)
    assert args.save_strategy == "no" and args.eval_strategy == "no"


def test_collate_blocks_makes_the_labels_the_inputs():
    rows = [{"input_ids": torch.tensor([5, 6, 7])}, {"input_ids": torch.tensor([8, 9, 10])}]
    batch = training.collate_blocks(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 10]] and torch.equal(batch["labels"], batch["input_ids"])


@pytest.mark.parametrize("key, value", [("vocab_size", 999), ("n_positions", 64), ("n_embd", 48), ("n_layer", 3),
                                        ("n_head", 4)])


def test_any_architecture_change_blocks_resuming(tmp_path, key, value):
    model = training.build_model(1000, context_length=32, n_embd=32, n_layer=1, n_head=2)
    model.config.save_pretrained(tmp_path)
    architecture = {name: getattr(model.config, name) for name in training.ARCHITECTURE_KEYS}
    assert training.saved_model_mismatch(tmp_path, architecture, "fingerprint") == []  # the same: fine
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, key: value}))
    assert training.saved_model_mismatch(tmp_path, architecture, "fingerprint") == [
        f"{key} {value} (now {getattr(model.config, key)})"]


def test_load_splits_needs_two_stories_to_hold_one_out(tmp_path):
    data = corpus.write_txt(tmp_path / "one.txt", ["Only one story."])
    with pytest.raises(ValueError, match="too few stories"):
        training.load_splits(str(data), "", valid_fraction=0.5)


def test_spread_subset_takes_evenly_spaced_blocks_or_all():
    from datasets import Dataset
    blocks = Dataset.from_dict({"input_ids": [[i] for i in range(10)]})
    assert [row[0] for row in training.spread_subset(blocks, 4)["input_ids"]] == [0, 2, 5, 7]
    assert training.spread_subset(blocks, 0) is blocks and training.spread_subset(blocks, 10) is blocks
    assert training.spread_subset(blocks, 25) is blocks
