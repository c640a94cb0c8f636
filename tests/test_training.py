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
from lmkit.folders import RUN_RECORD


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


def test_training_arguments_on_cuda_pin_memory_and_allow_tf32_and_never_compile_unasked(tmp_path, monkeypatch):
    """What differs on a GPU, checked on any machine: the TrainingArguments are recorded, not built (on a
    CPU-only machine the library refuses tf32)."""
    import transformers

    built = []
    monkeypatch.setattr(transformers, "TrainingArguments", lambda **kwargs: built.append(kwargs) or kwargs)
    monkeypatch.setattr(training, "precision", lambda device: "fp32")
    for device in ("cuda", "cpu"):
        training.training_arguments(tmp_path, device=device, batch_size=8, learning_rate=1e-3, max_steps=5)
    on_gpu, on_cpu = built
    assert (on_gpu["tf32"], on_gpu["dataloader_pin_memory"]) == (True, True)
    assert (on_cpu["tf32"], on_cpu["dataloader_pin_memory"]) == (None, False)
    assert on_gpu["torch_compile"] is False and on_cpu["torch_compile"] is False  # compiling only when asked


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


# ---- pinned by mutation testing (issue 23): resuming, the schedule after a resume, the guard


def make_checkpoint(folder, step, truncate=None):
    """A checkpoint folder as the Trainer writes one: weights, config, state, optimizer and scheduler;
    `truncate` names a file to cut in half, as a save interrupted part-way leaves it."""
    from safetensors.torch import save_file
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"n_embd": 4}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    torch.save({"state": {0: torch.zeros(64)}}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    if truncate:
        data = (folder / truncate).read_bytes()
        (folder / truncate).write_bytes(data[:len(data) // 2])
    return folder


def checkpoint_names(incomplete):
    """Names of find_checkpoints' incomplete ones (paths, or (path, why) pairs)."""
    return [(item[0] if isinstance(item, tuple) else item).name for item in incomplete]


def test_checkpoints_are_ordered_by_step_number_not_by_name(tmp_path):
    for step in (9, 10, 100, 2):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-x").mkdir()  # not a step number
    (tmp_path / "incomplete-checkpoint-500").mkdir()
    (tmp_path / "checkpoint-7").write_text("a file, not a folder")  # listed, to be set aside: it blocks step 7
    assert [path.name for path in training.checkpoint_folders(tmp_path)] == [
        "checkpoint-100", "checkpoint-10", "checkpoint-9", "checkpoint-7", "checkpoint-2"]
    assert training.checkpoint_problem(tmp_path / "checkpoint-7") == "it is a file, not a folder"
    assert training.checkpoint_folders(tmp_path / "missing") == []


@pytest.mark.parametrize("damaged", ["optimizer.pt", "scheduler.pt", "model.safetensors", "trainer_state.json",
                                     "config.json"])
def test_a_checkpoint_with_any_file_cut_short_is_not_resumed(tmp_path, damaged):
    make_checkpoint(tmp_path / "checkpoint-9", 9)
    make_checkpoint(tmp_path / "checkpoint-10", 10, truncate=damaged)
    checkpoint, incomplete = training.find_checkpoints(tmp_path)
    assert checkpoint == tmp_path / "checkpoint-9" and checkpoint_names(incomplete) == ["checkpoint-10"]


def test_the_last_complete_checkpoint_is_resumed(tmp_path):
    for step in (9, 10):
        make_checkpoint(tmp_path / f"checkpoint-{step}", step)
    assert training.find_checkpoints(tmp_path) == (tmp_path / "checkpoint-10", [])
    assert training.find_checkpoints(tmp_path / "missing") == (None, [])


def test_set_aside_renames_and_replaces_an_older_one(tmp_path):
    old = make_checkpoint(tmp_path / "checkpoint-4", 4)
    (tmp_path / "incomplete-checkpoint-4").mkdir()
    (tmp_path / "incomplete-checkpoint-4" / "stale").write_text("x")
    moved = training.set_aside(old)
    assert moved == tmp_path / "incomplete-checkpoint-4" and not old.exists()
    assert (moved / "config.json").is_file() and not (moved / "stale").exists()


def test_set_aside_checkpoints_moves_all_into_one_folder(tmp_path):
    assert training.set_aside_checkpoints(tmp_path) is None
    for step in (3, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "incomplete-checkpoint-9").mkdir()
    aside = training.set_aside_checkpoints(tmp_path)
    assert aside.parent == tmp_path and aside.name.startswith("replaced-")
    assert sorted(path.name for path in aside.iterdir()) == ["checkpoint-3", "checkpoint-6", "incomplete-checkpoint-9"]
    assert training.checkpoint_folders(tmp_path) == []


def cosine_run(steps_done, learning_rate=1e-3, warmup=2, total=20):
    """An AdamW with the Trainer's two groups (decay and no decay) and its cosine LambdaLR, `steps_done` in."""
    from transformers import get_cosine_schedule_with_warmup
    decayed, plain = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW([{"params": [decayed], "weight_decay": 0.1}, {"params": [plain], "weight_decay": 0.0}],
                                  lr=learning_rate)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)
    for _ in range(steps_done):
        optimizer.step()
        scheduler.step()
    return optimizer, scheduler


class FakeState:
    max_steps = 20

    def __init__(self):
        self.computed = None

    def compute_steps(self, args, max_steps):
        self.computed = (args, max_steps)


def test_a_resumed_run_follows_the_new_rate_on_the_old_schedule():
    from types import SimpleNamespace
    optimizer, scheduler = cosine_run(7)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    assert 0 < factor < 1  # past the warm-up, part-way down the cosine
    args, state = SimpleNamespace(learning_rate=4e-4, weight_decay=0.05), FakeState()
    training.apply_new_schedule(args, state, optimizer, scheduler)
    assert state.computed == (args, 20)  # the logging/evaluation intervals are worked out again
    assert scheduler.base_lrs == [4e-4, 4e-4]
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([4e-4 * factor] * 2)
    assert [group["initial_lr"] for group in optimizer.param_groups] == [4e-4, 4e-4]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]  # only the decay group
    assert scheduler.get_last_lr() == pytest.approx([4e-4 * factor] * 2)
    scheduler.step()  # and the schedule carries on from the new rate
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4e-4 * scheduler.lr_lambdas[0](8))


def test_a_wrapped_schedule_is_updated_and_a_foreign_one_left_alone():
    from types import SimpleNamespace
    optimizer, scheduler = cosine_run(5)
    args = SimpleNamespace(learning_rate=2e-4, weight_decay=0.1)
    training.apply_new_schedule(args, FakeState(), optimizer, SimpleNamespace(scheduler=scheduler))  # accelerate's wrapper
    assert scheduler.base_lrs == [2e-4, 2e-4]
    other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5)
    step = torch.optim.lr_scheduler.StepLR(other, 3)
    training.apply_new_schedule(args, FakeState(), other, step)
    assert other.param_groups[0]["lr"] == 0.5 and step.base_lrs == [0.5]


def test_weights_are_finite_sees_one_bad_value():
    model = torch.nn.Linear(3, 2)
    assert training.weights_are_finite(model)
    with torch.no_grad():
        model.bias[1] = float("inf")
    assert not training.weights_are_finite(model)


def test_precision_on_a_cpu_is_fp32():
    assert training.precision("cpu") == "fp32" and training.precision("mps") == "fp32"


def test_differences_name_the_changed_settings_only():
    before = {"LEARNING_RATE": 0.01, "SEED": 1, "MODEL_DIR": "a"}
    now = {"LEARNING_RATE": 0.02, "SEED": 1, "MODEL_DIR": "b", "NEW_ONE": 3}
    assert training.differences(before, now) == ["LEARNING_RATE 0.01 -> 0.02", "MODEL_DIR 'a' -> 'b'"]
    assert training.differences(before, now, ignore=("MODEL_DIR",)) == ["LEARNING_RATE 0.01 -> 0.02"]


def test_guard_saves_and_stops_on_ctrl_c_and_records_every_checkpoint(tmp_path):
    from transformers import TrainerControl, TrainerState
    from types import SimpleNamespace
    calls = []
    guard = training.make_guard_callback({"settings": {"SEED": 3}}, after_first_save=lambda: calls.append(1))
    args, state = SimpleNamespace(output_dir=str(tmp_path)), TrainerState(global_step=6)
    control = TrainerControl()
    guard.on_step_end(args, state, control)
    assert not control.should_save and not control.should_training_stop and not control.should_log
    guard.interrupted = True
    guard.on_step_end(args, state, control, model=torch.nn.Linear(2, 2))
    assert control.should_save and control.should_training_stop and control.should_log
    for step in (6, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
        guard.on_save(args, TrainerState(global_step=step), control)
    assert calls == [1]  # after the first save only
    for step in (6, 8):
        assert json.loads((tmp_path / f"checkpoint-{step}" / RUN_RECORD).read_text())["settings"] == {"SEED": 3}
    control = TrainerControl()
    guard.on_log(args, state, control, logs={"loss": 2.5})
    guard.on_evaluate(args, state, control, metrics={"eval_loss": 2.5})
    assert not control.should_training_stop and guard.bad_loss_step is None
    guard.on_evaluate(args, TrainerState(global_step=9), control, metrics={"eval_loss": float("nan")})
    assert control.should_training_stop and not control.should_save and guard.bad_loss_step == 9


def test_load_splits_holds_out_two_percent_by_default(tmp_path):
    data = corpus.write_txt(tmp_path / "train.txt", [f"Story number {i}." for i in range(100)])
    train_set, valid_set = training.load_splits(str(data))
    assert (len(train_set), len(valid_set)) == (98, 2)
    again = training.load_splits(str(data), seed=42)
    assert list(again[1]["text"]) == list(valid_set["text"])  # the default seed is 42


def test_the_trainer_keeps_every_column_and_writes_no_report(tmp_path):
    args = training.training_arguments(tmp_path, device="cpu", batch_size=4, learning_rate=1e-3)
    assert args.remove_unused_columns is False and args.report_to in ("none", [], ["none"])
    assert args.logging_nan_inf_filter is False and args.num_train_epochs == 1.0 and args.max_steps == -1
    assert args.gradient_accumulation_steps == 1 and args.dataloader_num_workers == 0


def tokenizer_folder(folder, words):
    """A folder holding only a tokenizer.json whose vocabulary is `words`."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    folder.mkdir(parents=True, exist_ok=True)
    Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0])).save(str(folder / "tokenizer.json"))
    return folder


def test_a_saved_model_without_a_run_record_is_checked_by_its_tokenizer_file(tmp_path):
    from lmkit.folders import tokenizer_fingerprint
    model = training.build_model(50, context_length=16, n_embd=16, n_layer=1, n_head=2)
    architecture = {name: getattr(model.config, name) for name in training.ARCHITECTURE_KEYS}
    folder = tokenizer_folder(tmp_path / "old", ["a", "b", "c"])
    model.config.save_pretrained(folder)
    same = tokenizer_fingerprint(folder)
    assert training.saved_model_mismatch(folder, architecture, same) == []
    assert training.saved_model_mismatch(folder, architecture, "sha256:other") == [
        "another tokenizer (its vocabulary differs from TOKENIZER_DIR's)"]
    assert training.saved_model_mismatch(folder, architecture, same, settings={"SEED": 1}) == [
        f"settings that were not recorded (no {RUN_RECORD})"]


def test_a_run_record_without_settings_differs_in_none(tmp_path):
    from lmkit.folders import write_run_record
    model = training.build_model(50, context_length=16, n_embd=16, n_layer=1, n_head=2)
    architecture = {name: getattr(model.config, name) for name in training.ARCHITECTURE_KEYS}
    model.config.save_pretrained(tmp_path)
    write_run_record(tmp_path, {"tokenizer": "sha256:t"})
    assert training.saved_model_mismatch(tmp_path, architecture, "sha256:t", settings={"SEED": 1}) == []
    assert training.saved_model_mismatch(tmp_path, architecture, "sha256:u") == [
        "another tokenizer (its vocabulary differs from TOKENIZER_DIR's)"]
    write_run_record(tmp_path, {"tokenizer": "sha256:t", "settings": {"SEED": 1, "MODEL_DIR": "x", "N_EMBD": 8}})
    assert training.saved_model_mismatch(tmp_path, architecture, "sha256:t",
                                         settings={"SEED": 2, "MODEL_DIR": "y", "N_EMBD": 16}) == ["SEED 1 -> 2"]
    (tmp_path / "config.json").write_text("{cut")
    assert training.saved_model_mismatch(tmp_path, architecture, "sha256:t") == [
        f"a {tmp_path / 'config.json'} that cannot be read"]


def test_trainer_warnings_a_user_can_do_nothing_about_are_dropped():
    import logging
    logger = logging.getLogger("transformers.trainer_utils")
    for existing in [f for f in logger.filters if type(f).__name__ == "_DropMessages"]:
        logger.removeFilter(existing)  # from an earlier test in this process: start as a fresh run does
    training.quiet_trainer_warnings()
    training.quiet_trainer_warnings()  # twice: one filter
    assert sum(type(f).__name__ == "_DropMessages" for f in logger.filters) == 1

    def shown(message):
        return bool(logger.filter(logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, None, None)))

    assert not shown("mtime may not be reliable on this filesystem, falling back to numerical ordering")
    assert not shown("The following arguments do not match the ones in the `trainer_state.json` within the checkpoint")
    assert shown("Checkpoint destination directory exists")


def test_the_loss_curve_says_what_its_axes_are(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    seen, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda figure: (seen.append(figure), close(figure)))
    training.plot_loss_curve([{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.8}, {"step": 2, "eval_loss": 2.9}],
                             tmp_path / "curve.png")
    axes = seen[0].axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == (
        "step", "cross-entropy (nats per token)", "TinyStories GPT-2")
    assert [line.get_label() for line in axes.get_lines()] == ["training loss", "validation loss"]
    assert [list(line.get_xdata()) for line in axes.get_lines()] == [[1, 2], [2]]
    png = (tmp_path / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (840, 480)  # 7 x 4 in at 120 dpi
