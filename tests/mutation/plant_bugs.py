"""Mutation check of the test suite: plant realistic bugs one at a time and see whether the tests notice.

    python tests/mutation/plant_bugs.py                       # every bug below (~45 min on 2 busy cores)
    python tests/mutation/plant_bugs.py --only=token_nll,resume # some of them, by name
    python tests/mutation/plant_bugs.py --tests-from=de8d55b   # the same bugs against an older tests/
    python tests/mutation/plant_bugs.py --list                 # the bugs, without running anything

Each bug is one textual edit of one file (OLD must occur exactly once: an edit that no longer applies
is reported as "stale", never silently skipped). It is planted in a fresh copy of the repository in a
temporary folder (the working tree is never touched) and the tests named for it run there with `-x`
and a time limit. A bug is caught when those tests fail (or time out). Bugs that cannot change how the
tiny tokenizer and model of tests/conftest.py are made share one prebuilt copy of them
(PILISH_TEST_FIXTURES), built once from the unmutated code; the others build their own.

These are the realistic bugs a mutation generator does not make (a setting that never reaches its call,
a held-out slice taken from the wrong part). They were written by the people who write the tests, so
their score measures how well the two fit: the suite's score is the random sample of generated mutants
(tests/mutation/sample.py, docs/testing.md). Not a test module (no test_ prefix): pytest never collects it.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIME_LIMIT = 900  # seconds for one bug's tests: a hang counts as caught, but should not stall the run


@dataclass
class Bug:
    name: str
    path: str
    old: str
    new: str
    tests: list = field(default_factory=list)
    rebuild_fixtures: bool = False  # the bug changes how conftest's tokenizer or model is made


T = "tests/"
BUGS = [
    # ---- lmkit (was common.py)
    Bug("dash_names", "lmkit/settings.py", 'key = name.replace("-", "_").upper()', "key = name.upper()",
        [T + "test_settings.py"]),
    Bug("bare_flag_false", "lmkit/settings.py", 'text = "true"', 'text = "false"', [T + "test_settings.py"]),
    Bug("glued_story_after_marker_lost", "lmkit/data.py", "lines = [after]", "lines = []", [T + "test_data.py"]),
    Bug("space_mark_counted", "pilish/tokens.py",
        "return token[len(SPACE_MARK):] if token.startswith(SPACE_MARK) else token", "return token",
        [T + "test_pilish_tokens.py", T + "test_pilish_processor.py", T + "test_train_tokenizer.py"]),
    Bug("specials_kept", "lmkit/text.py", "special = set(tokenizer.all_special_ids)\n    tokens",
        "special = set()\n    tokens", [T + "test_text.py", T + "test_train_tokenizer.py", T + "test_generate.py"]),
    Bug("token_nll_shift", "lmkit/scoring.py", "cross_entropy(logits[:-1], ids[start + 1:end]",
        "cross_entropy(logits[1:], ids[start + 1:end]", [T + "test_scoring.py", T + "test_pilish_generate.py"]),
    Bug("token_nll_no_overlap", "lmkit/scoring.py", "stride = max(1, context_length // 2)",
        "stride = max(1, context_length)", [T + "test_scoring.py"]),
    Bug("unknown_words_inverted", "lmkit/text.py", "if token_id == tokenizer.unk_token_id]",
        "if token_id != tokenizer.unk_token_id]", [T + "test_text.py", T + "test_generate.py"]),
    # ---- pilish/rules.py (was pilish.py)
    Bug("ten_letters_spell_ten", "pilish/rules.py", 'if n_letters == 10:\n        return "0"',
        'if n_letters == 10:\n        return "10"', [T + "test_pilish_rules.py", T + "test_pilish_processor.py"]),
    Bug("two_digit_from_ten", "pilish/rules.py", "return length if length >= 11 else None",
        "return length if length >= 10 else None", [T + "test_pilish_rules.py", T + "test_pilish_plan.py",
                                                     T + "test_pilish_processor.py"]),
    Bug("verify_counts_one_digit_a_word", "pilish/rules.py", "position += len(spelled)", "position += 1",
        [T + "test_pilish_rules.py"]),
    Bug("no_guard_digits", "pilish/rules.py", "guard = 30", "guard = 0", [T + "test_pilish_rules.py"]),
    # ---- pilish/processor.py, pilish/writing.py, lmkit/scoring.py (was pilish_engine.py)
    Bug("window_restarts_at_zero", "pilish/writing.py", "processor.restart(window_ids.shape[1], position)",
        "processor.restart(window_ids.shape[1], 0)", [T + "test_pilish_writing.py"]),
    Bug("beams_repeat_not_interleave", "pilish/processor.py", "return start.repeat_interleave(rows // start.numel())",
        "return start.repeat(rows // start.numel())", [T + "test_pilish_processor.py"]),
    Bug("no_repeat_dropped", "pilish/writing.py",
        "common = dict(no_repeat_ngram_size=self.no_repeat_ngram_size or None,",
        "common = dict(no_repeat_ngram_size=None,", [T + "test_pilish_writing.py", T + "test_pilish_generate.py"]),
    Bug("stop_before_closing_mark", "pilish/processor.py", "return done & ~last_token_is_word", "return done",
        [T + "test_pilish_processor.py", T + "test_pilish_writing.py"]),
    Bug("nll_counts_marks_as_words", "lmkit/scoring.py",
        "if token_id not in special and any(char.isalpha() for char in token))", "if token_id not in special)",
        [T + "test_scoring.py", T + "test_pilish_generate.py"]),
    Bug("unclosed_quote", "pilish/writing.py", "return text + '\"' if text.count('\"') % 2 else text",
        "return text", [T + "test_pilish_writing.py"]),
    # ---- lmkit/tokenizer.py and train_tokenizer.py
    Bug("unk_rate_counts_marks", "lmkit/tokenizer.py", "if any(c.isalpha() for c in text[start:end]):",
        "if True:", [T + "test_tokenizer.py"]),
    Bug("held_out_from_training_part", "train_tokenizer.py", "stories.select(range(train_count, len(stories)))",
        "stories.select(range(held_out_count))", [T + "test_train_tokenizer.py"]),
    Bug("max_stories_ignored", "train_tokenizer.py", "if config.MAX_STORIES > 0:", "if config.MAX_STORIES < 0:",
        [T + "test_train_tokenizer.py"]),
    Bug("min_frequency_ignored", "train_tokenizer.py", "min_frequency=config.MIN_FREQUENCY", "min_frequency=1",
        [T + "test_train_tokenizer.py"]),
    Bug("lowercase_always", "lmkit/tokenizer.py", "if lowercase:\n", "if True:\n",
        [T + "test_tokenizer.py", T + "test_train_tokenizer.py"]),
    # ---- lmkit/training.py
    Bug("no_endoftext_between_stories", "lmkit/training.py", "story + [eot] for story in ids",
        "story for story in ids", [T + "test_training.py"], rebuild_fixtures=True),
    Bug("partial_last_block", "lmkit/training.py", "usable = len(stream) - len(stream) % context_length",
        "usable = len(stream)", [T + "test_training.py"], rebuild_fixtures=True),
    Bug("valid_dataset_ignored", "lmkit/training.py", "    if valid_dataset:\n", "    if False:\n",
        [T + "test_training.py", T + "test_train_model.py"], rebuild_fixtures=True),
    Bug("compile_ignored", "lmkit/training.py", "torch_compile=compile,", "torch_compile=False,",
        [T + "test_train_model.py"], rebuild_fixtures=True),
    Bug("dropout_not_in_embeddings", "lmkit/training.py", "embd_pdrop=dropout", "embd_pdrop=0.0",
        [T + "test_training.py", T + "test_train_model.py"], rebuild_fixtures=True),
    Bug("map_cache_disabled", "lmkit/training.py", 'remove_columns=dataset.column_names,',
        'remove_columns=dataset.column_names, load_from_cache_file=False,',
        [T + "test_training.py"], rebuild_fixtures=True),
    # ---- the scripts
    Bug("resume_ignored", "train_model.py",
        "trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)", "trainer.train()",
        [T + "test_train_model.py"], rebuild_fixtures=True),
    Bug("tokens_seen_one_process", "train_model.py",
        "block_tokens = config.CONTEXT_LENGTH * config.BATCH_SIZE * config.GRADIENT_ACCUMULATION * world_size",
        "block_tokens = config.CONTEXT_LENGTH * config.BATCH_SIZE * config.GRADIENT_ACCUMULATION",
        [T + "test_train_model.py"], rebuild_fixtures=True),
    Bug("prompt_room_ignored", "generate.py", "room = model.config.n_positions - prompt_length",
        "room = model.config.n_positions", [T + "test_generate.py"]),
    Bug("temperature_dropped", "generate.py", "temperature=config.TEMPERATURE if sampling else None",
        "temperature=None", [T + "test_generate.py"]),
    Bug("check_file_basic_rules", "pilish_generate.py",
        "verify(line, get_digits(config.DIGITS, max(1, needed)), config.RULES)",
        'verify(line, get_digits(config.DIGITS, max(1, needed)), "basic")', [T + "test_pilish_generate.py"]),
    Bug("same_seed_every_sample", "pilish_generate.py", "set_seed(config.SEED + sample)", "set_seed(config.SEED)",
        [T + "test_pilish_generate.py"]),
    # CONTEXT_LENGTH reaches write as WriteOptions.context_length: the window ignores it
    Bug("context_length_ignored", "pilish/writing.py", "context_window(model, options.context_length)",
        "context_window(model, 0)", [T + "test_pilish_generate.py", T + "test_pilish_writing.py"]),
    # ---- a second batch (2026-11-30), planted after the first one's tests were written
    Bug("list_split_on_commas", "lmkit/settings.py", 'text.split("|")', 'text.split(",")', [T + "test_settings.py"]),
    Bug("mixed_folder_accepted", "lmkit/data.py", "if len(kinds) > 1:", "if len(kinds) > 2:", [T + "test_data.py"]),
    Bug("offline_on_ignored", "lmkit/data.py", '("1", "TRUE", "YES", "ON")', '("1", "TRUE", "YES")',
        [T + "test_data.py"]),
    Bug("vocab_size_not_checked_on_resume", "lmkit/training.py",
        'ARCHITECTURE_KEYS = ("vocab_size", "n_positions",', 'ARCHITECTURE_KEYS = ("n_positions",',
        [T + "test_training.py"], rebuild_fixtures=True),
    Bug("adam_default_beta2", "lmkit/training.py", "adam_beta2=0.95", "adam_beta2=0.999", [T + "test_training.py"],
        rebuild_fixtures=True),
    Bug("perplexity_of_training_loss", "train_model.py", '"valid_perplexity": math.exp(evaluation["eval_loss"])',
        '"valid_perplexity": math.exp(result.training_loss)', [T + "test_train_model.py"], rebuild_fixtures=True),
    Bug("held_out_may_be_everything", "train_tokenizer.py", 'within(config, "HELD_OUT", 0, 1, high_open=True)',
        'within(config, "HELD_OUT", 0, 1)', [T + "test_train_tokenizer.py"]),
    Bug("prompt_without_endoftext", "generate.py", "texts = [tokenizer.eos_token + prompt for prompt in prompts]",
        "texts = list(prompts)", [T + "test_generate.py"]),
    Bug("show_digits_overflows", "pilish_generate.py", "if len(top) + cell > width and top:",
        "if len(top) > width and top:", [T + "test_pilish_generate.py"]),
    Bug("window_not_clamped", "lmkit/scoring.py",
        "return min(window or model.config.n_positions, model.config.n_positions)",
        "return window or model.config.n_positions", [T + "test_scoring.py", T + "test_pilish_writing.py"]),
    Bug("progress_counts_windows", "pilish/writing.py", "progress.update(position - before)", "progress.update(1)",
        [T + "test_pilish_writing.py"]),
    Bug("zero_beams_accepted", "pilish/writing.py", "if self.num_beams < 1:", "if self.num_beams < 0:",
        [T + "test_pilish_writing.py"]),
    Bug("window_index_skips_boundary_ngram", "pilish/prior.py",
        "for i in range(max(0, len(self.history) - n + 1), len(words) - n + 1):",
        "for i in range(len(self.history), len(words) - n + 1):", [T + "test_pilish_prior.py"]),
    Bug("prefill_reads_the_last_token_too", "pilish/writing.py",
        "cache = model(window_ids[:, :-1], use_cache=True)[name]",
        "cache = model(window_ids, use_cache=True)[name]", [T + "test_pilish_writing.py"]),
    Bug("quotes_balanced_on_the_window_only", "pilish/prior.py",
        "banned |= self.opening if quote_open_after(self.quote_open, ids, self.opening, self.closing)",
        "banned |= self.opening if quote_open_after(False, ids, self.opening, self.closing)",
        [T + "test_pilish_prior.py"]),
    Bug("prior_followers_shifted", "pilish/prior.py",
        "first = torch.repeat_interleave(lo - (counts.cumsum(0) - counts), counts)",
        "first = torch.repeat_interleave(lo - counts.cumsum(0) + 1, counts)", [T + "test_pilish_prior.py"]),
]


def staleness(bug, root=ROOT):
    """Why `bug` no longer applies to the code and tests under `root` ("" when it does)."""
    path = root / bug.path
    count = path.read_text(encoding="utf-8").count(bug.old) if path.is_file() else 0
    if count != 1:
        return f"{bug.old!r} occurs {count} times in {bug.path}"
    missing = [test for test in bug.tests if not (root / test.split("::")[0]).is_file()]
    return f"no {', '.join(missing)}" if missing else ""


def copy_repo(destination, tests_from=None):
    """The working tree's tracked and untracked-but-not-ignored files (no venvs, no caches)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    if tests_from:  # the tests of an older revision, against the same bugs
        shutil.rmtree(destination / "tests")
        archive = subprocess.run(["git", "archive", tests_from, "tests"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)
        # today's conftest (same fixtures, plus the shared prebuilt ones) so the run takes as long
        shutil.copy2(ROOT / "tests" / "conftest.py", destination / "tests" / "conftest.py")


def run_tests(folder, tests, fixtures=None, time_limit=TIME_LIMIT):
    """(passed, seconds, the first failing test or why it stopped)."""
    env = {**os.environ, "CI": "true"}
    env.pop("PILISH_TEST_FIXTURES", None)
    if fixtures:
        env["PILISH_TEST_FIXTURES"] = str(fixtures)
    started = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rf",
                                 *tests], cwd=folder, capture_output=True, text=True, env=env, timeout=time_limit)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - started, f"timed out after {time_limit} s"
    seconds = time.perf_counter() - started
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in result.stdout.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    return result.returncode == 0, seconds, (failed[0] if failed else result.stdout.strip().splitlines()[-1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated bug names")
    parser.add_argument("--tests-from", default="", help="a git revision whose tests/ to run instead")
    parser.add_argument("--list", action="store_true", help="list the bugs and exit")
    options = parser.parse_args()
    bugs = [bug for bug in BUGS if not options.only or bug.name in options.only.split(",")]
    if options.list:
        stale = [bug for bug in bugs if staleness(bug)]
        for bug in bugs:
            why = staleness(bug)
            print(f"{bug.name:34} {bug.path:20} {' '.join(bug.tests)}" + (f"  STALE: {why}" if why else ""))
        print(f"\n{len(bugs)} bugs, {len(stale)} stale")
        sys.exit(1 if stale else 0)
    work = Path(tempfile.mkdtemp(prefix="plant-bugs-"))
    fixtures = work / "fixtures"
    results = []
    try:
        print(f"building the shared tokenizer and model from the unmutated code in {fixtures} ...", flush=True)
        clean = work / "clean"
        copy_repo(clean, options.tests_from)
        # the clean code must pass: a test that already fails would count every bug as caught
        passed, seconds, why = run_tests(clean, ["tests/test_pilish_generate.py::test_prompt_is_continued"], fixtures)
        if not passed:
            sys.exit(f"the unmutated code fails its tests ({why}): fix that first")
        for number, bug in enumerate(bugs, 1):
            folder = work / bug.name
            copy_repo(folder, options.tests_from)
            source = (folder / bug.path).read_text(encoding="utf-8")
            if source.count(bug.old) != 1:
                results.append((bug, "stale", 0.0, f"{bug.old!r} occurs {source.count(bug.old)} times"))
            else:
                (folder / bug.path).write_text(source.replace(bug.old, bug.new), encoding="utf-8")
                tests = [test for test in bug.tests if (folder / test.split("::")[0]).exists()]  # older tests/
                if tests:
                    passed, seconds, why = run_tests(folder, tests, None if bug.rebuild_fixtures else fixtures)
                    results.append((bug, "survived" if passed else "caught", seconds, why))
                else:
                    results.append((bug, "survived", 0.0, "none of its test files exist"))
            shutil.rmtree(folder, ignore_errors=True)
            bug, verdict, seconds, why = results[-1]
            print(f"[{number:2}/{len(bugs)}] {verdict:8} {bug.name:32} {seconds:5.0f} s  {why}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    applied = [r for r in results if r[1] != "stale"]
    caught = [r for r in applied if r[1] == "caught"]
    print(f"\nscore: {len(caught)}/{len(applied)} planted bugs caught"
          + (f" ({len(results) - len(applied)} stale)" if len(applied) < len(results) else "")
          + (f"; tests from {options.tests_from}" if options.tests_from else ""))
    survivors = [r[0].name for r in applied if r[1] == "survived"]
    if survivors:
        print("survived: " + ", ".join(survivors))


if __name__ == "__main__":
    main()
