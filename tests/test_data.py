"""lmkit.data: stories from a .txt (maybe gzipped), a folder, json/jsonl/parquet, the bundled sample or the hub."""

import gzip
import json
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

import corpus
from conftest import ROOT
from lmkit import data
from lmkit.data import SAMPLE_DIR, hub_offline, load_stories, stories_in_txt
from lmkit.settings import UserError


def texts(dataset):
    return list(dataset["text"])


def test_txt_with_endoftext_lines(tmp_path):
    stories = ["First story.\n\nIt has two paragraphs.", "Second story.", "Third."]
    path = corpus.write_txt(tmp_path / "a.txt", stories)
    assert texts(load_stories(str(path))) == stories


def test_txt_with_blank_lines(tmp_path):
    path = corpus.write_txt(tmp_path / "b.txt", ["One.", "Two, two.", "Three!"], separator=None)
    assert texts(load_stories(str(path))) == ["One.", "Two, two.", "Three!"]


def test_endoftext_glued_to_text_still_splits(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("Alpha ends.<|endoftext|>\nBeta ends.\n<|endoftext|>", encoding="utf-8")
    assert [s["text"] for s in stories_in_txt([path])] == ["Alpha ends.", "Beta ends."]
    path.write_text("One.<|endoftext|>Two starts\nand ends.<|endoftext|>\n<|endoftext|>Three.", encoding="utf-8")
    assert [s["text"] for s in stories_in_txt([path])] == ["One.", "Two starts\nand ends.", "Three."]


def test_folder_of_txt_files(tmp_path):
    corpus.write_txt(tmp_path / "1.txt", ["A one.", "A two."])
    corpus.write_txt(tmp_path / "2.txt", ["B one."])
    (tmp_path / "notes.md").write_text("ignored")
    assert texts(load_stories(str(tmp_path))) == ["A one.", "A two.", "B one."]


def test_json_jsonl_and_parquet(tmp_path):
    rows = [{"text": "Story one.", "id": 1}, {"text": "Story two.", "id": 2}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    for name in ("d.json", "d.jsonl", "d.parquet"):
        dataset = load_stories(str(tmp_path / name))
        assert dataset.column_names == ["text"] and texts(dataset) == ["Story one.", "Story two."]


def test_edited_file_is_read_again(tmp_path):
    path = corpus.write_txt(tmp_path / "e.txt", ["Old."])
    assert texts(load_stories(str(path))) == ["Old."]
    time.sleep(0.01)
    corpus.write_txt(path, ["New one.", "New two."])
    assert texts(load_stories(str(path))) == ["New one.", "New two."]


def gzip_copy(path, target):
    """`path` gzipped to `target`, as a user's download would be."""
    with open(path, "rb") as plain, gzip.open(target, "wb") as packed:
        shutil.copyfileobj(plain, packed)
    return target


@pytest.mark.parametrize("separator", ["<|endoftext|>", None])
def test_gzipped_txt_gives_the_same_stories(tmp_path, separator):
    plain = corpus.write_txt(tmp_path / "stories.txt", corpus.stories(50), separator=separator)
    packed = gzip_copy(plain, tmp_path / "stories.txt.gz")
    assert packed.stat().st_size < plain.stat().st_size  # really compressed, not a renamed copy
    assert texts(load_stories(str(packed))) == texts(load_stories(str(plain))) == corpus.stories(50)


def test_folder_of_gzipped_txt_files(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "packed").mkdir()
    for name, seed in [("1", 1), ("2", 2)]:
        plain = corpus.write_txt(tmp_path / "plain" / f"{name}.txt", corpus.stories(20, seed=seed))
        gzip_copy(plain, tmp_path / "packed" / f"{name}.txt.gz")
    stories = texts(load_stories(str(tmp_path / "plain")))
    assert texts(load_stories(str(tmp_path / "packed"))) == stories
    assert stories == corpus.stories(20, seed=1) + corpus.stories(20, seed=2)


def test_gzipped_json_and_jsonl(tmp_path):
    rows = [{"text": "Story one."}, {"text": "Story two."}]
    with gzip.open(tmp_path / "d.json.gz", "wt") as handle:
        handle.write(json.dumps(rows))
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows))
    for name in ("d.json.gz", "d.jsonl.gz"):
        assert texts(load_stories(str(tmp_path / name))) == ["Story one.", "Story two."]


def test_edited_gzipped_file_is_read_again(tmp_path):
    plain = corpus.write_txt(tmp_path / "e.txt", ["Old."])
    packed = gzip_copy(plain, tmp_path / "e.txt.gz")
    assert texts(load_stories(str(packed))) == ["Old."]
    time.sleep(0.01)
    gzip_copy(corpus.write_txt(plain, ["New one.", "New two."]), packed)
    assert texts(load_stories(str(packed))) == ["New one.", "New two."]


def test_damaged_gzip_is_a_clear_error(tmp_path):
    packed = gzip_copy(corpus.write_txt(tmp_path / "s.txt", corpus.stories(200)), tmp_path / "s.txt.gz")
    (tmp_path / "cut.txt.gz").write_bytes(packed.read_bytes()[:300])  # a download cut short
    (tmp_path / "fake.txt.gz").write_text("One.\n\nTwo.\n")  # named .gz, never compressed
    for name, message in [("cut.txt.gz", "ended before"), ("fake.txt.gz", "Not a gzipped file")]:
        with pytest.raises(UserError, match=f"cannot read .*{name}: .*{message}"):
            load_stories(str(tmp_path / name))


def test_bundled_sample():
    assert (SAMPLE_DIR / "README.md").read_text(encoding="utf-8").count("CDLA-Sharing-1.0") >= 1
    train, valid = load_stories("sample"), load_stories("sample", split="validation")
    assert len(train) == 2413 and len(valid) == 3348
    assert train[0]["text"].startswith("One day, a little girl named Lily found a needle in her room.")
    assert train[-1]["text"].endswith("She hoped to see the dolphin again.")
    assert valid[0]["text"].startswith("Spot. Spot saw the shiny car")
    assert not set(train["text"]) & set(valid["text"])
    with pytest.raises(UserError, match="no 'test' split"):
        load_stories("sample", split="test")


def test_a_local_folder_named_sample_is_the_users_own(tmp_path, monkeypatch):
    (tmp_path / "sample").mkdir()
    corpus.write_txt(tmp_path / "sample" / "mine.txt", ["My own story."])
    monkeypatch.chdir(tmp_path)
    assert texts(load_stories("sample")) == ["My own story."]


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "missing.txt"), "no such file"),
    (lambda p: (p / "empty.txt").write_text("") and str(p / "empty.txt") or str(p / "empty.txt"), "empty"),
    (lambda p: (p / "blank.txt").write_text("\n\n  \n") and str(p / "blank.txt"), "no stories"),
    (lambda p: (p / "x.csv").write_text("a") and str(p / "x.csv"), "unknown file type"),
    (lambda p: (p / "x.parquet.gz").write_text("a") and str(p / "x.parquet.gz"), "unknown file type"),
    (lambda p: (p / "t.jsonl").write_text('{"story": "x"}') and str(p / "t.jsonl"), "no 'text' column"),
    (lambda p: str(p), "has no .txt"),
    (lambda p: (p / "a.txt").write_text("A.") and (p / "b.jsonl").write_text('{"text": "B."}') and str(p),
     "mixes file types"),
])
def test_bad_local_data_is_a_clear_error(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        load_stories(make(tmp_path))


@pytest.mark.timeout(60)  # no minutes of retries (a time limit, not a timed assert: it only catches a hang)
def test_unreachable_hub_is_one_clear_line():
    with pytest.raises(UserError) as error:
        load_stories("roneneldan/TinyStories")
    message = str(error.value)
    assert "hub" in message and "--dataset=" in message and "\n" not in message


@pytest.mark.parametrize("value, offline", [
    ("1", True), ("true", True), ("YES", True), ("on", True), ("On", True),
    ("0", False), ("", False), (None, False), ("false", False), ("no", False), ("off", False),
])
def test_hf_hub_offline_is_read_as_huggingface_hub_reads_it(value, offline):
    assert hub_offline({} if value is None else {"HF_HUB_OFFLINE": value}) is offline


def test_hf_hub_offline_0_still_checks_the_hub_first(monkeypatch):
    checked = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(data, "_hub_reachable", lambda: checked.append(True) or False)
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub"):
        load_stories("roneneldan/TinyStories")
    assert checked  # "0" means online: the quick reachability check runs, no minutes of retries


def test_hf_hub_offline_0_without_network_fails_in_one_line():
    # retrying took 24-28 s: the time limit (not a timed assert) only catches that
    result = subprocess.run([sys.executable, "train_tokenizer.py", "--tokenizer_dir=/nonexistent/tok"], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "0"}, timeout=30)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "cannot reach the Hugging Face hub" in result.stderr


# ---- pinned by mutation testing (issue 23): names in capitals, same-size edits, damaged text


def test_suffixes_are_read_in_any_case(tmp_path):
    assert [data.local_format(name) for name in ("A.TXT", "b.Jsonl", "c.JSON.GZ", "d.txt.GZ", "e.PARQUET",
                                                   "f.parquet.gz", "g.csv", "h")] == [
        "text", "json", "json", "text", "parquet", None, None, None]
    plain = corpus.write_txt(tmp_path / "s.txt", ["Upper case one.", "Upper case two."])
    packed = gzip_copy(plain, tmp_path / "STORIES.TXT.GZ")
    assert texts(load_stories(str(packed))) == ["Upper case one.", "Upper case two."]
    with data.open_text(packed) as handle:
        assert handle.read().startswith("Upper case one.")
    with data.open_text(packed, "rb") as handle:
        assert handle.read(5) == b"Upper"  # the text, not the compressed bytes


def test_an_edit_of_the_same_size_is_read_again(tmp_path):
    path = corpus.write_txt(tmp_path / "same.txt", ["Cat sat."])
    assert texts(load_stories(str(path))) == ["Cat sat."]
    size = path.stat().st_size
    corpus.write_txt(path, ["Dog ran."])
    assert path.stat().st_size == size
    stamp = path.stat().st_mtime + 5  # a later modification time, as a real edit has
    os.utime(path, (stamp, stamp))
    assert texts(load_stories(str(path))) == ["Dog ran."]


def test_a_file_cut_inside_a_character_or_holding_binary_is_refused(tmp_path):
    cut = tmp_path / "cut.txt"
    cut.write_bytes("Once upon a time, a café".encode("utf-8")[:-1])  # the é's second byte lost
    with pytest.raises(ValueError, match="cut.txt is not UTF-8 text \\(it ends inside a character\\)"):
        data.check_text_file(cut)
    with pytest.raises(UserError, match="ends inside a character"):
        load_stories(str(cut))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"Hello caf\xe9 and more")
    with pytest.raises(ValueError, match="latin.txt is not UTF-8 text \\(byte 9\\)"):
        data.check_text_file(latin)
    binary = tmp_path / "zero.txt"
    binary.write_bytes(b"abcdef" + bytes(1) + b"more")
    with pytest.raises(ValueError, match="zero.txt is a binary file, not text \\(a zero byte at offset 6\\)"):
        data.check_text_file(binary)
    with pytest.raises(ValueError, match="a zero byte at offset 6\\)"):
        data.check_text_file(binary, chunk_size=2)  # the offset counts every earlier chunk
    whole = tmp_path / "whole.txt"
    whole.write_bytes("café au lait".encode("utf-8"))
    assert data.check_text_file(whole, chunk_size=4) is None  # a split character is fine; the text is not held
    assert data.check_text_file(whole, chunk_size=4, keep=True) == "café au lait"  # unless asked (a pipe)


def test_a_story_glued_to_the_marker_and_the_last_story_without_one_are_kept(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("First.\n<|endoftext|>Second, glued.\nStill second.\n<|endoftext|>\n\nLast, no marker.\n",
                    encoding="utf-8")
    assert texts(load_stories(str(path))) == ["First.", "Second, glued.\nStill second.", "Last, no marker."]
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\nOne.\nStill one.\n\n\n\nTwo.", encoding="utf-8")
    assert texts(load_stories(str(blank))) == ["One.\nStill one.", "Two."]


def test_the_sample_file_of_each_split():
    assert data.sample_file() == SAMPLE_DIR / "train.txt.gz"
    assert data.sample_file("validation") == SAMPLE_DIR / "valid.txt.gz"


def test_a_missing_bundled_sample_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SAMPLE_DIR", tmp_path)
    with pytest.raises(UserError, match="the bundled sample is missing: no .*train.txt.gz"):
        data.sample_file("train")


def test_hub_errors_name_the_set_and_the_way_out(monkeypatch):
    monkeypatch.setattr(data, "hub_offline", lambda: True)
    import datasets

    def load_dataset(source, split):
        raise ValueError(f'Unknown split "{split}". Should be one of [\'train\'].\nmore')
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(UserError, match="^could not load data set 'someone/set': Unknown split \"test\"") as error:
        load_stories("someone/set", split="test")
    assert "\n" not in str(error.value)

    def unreachable(source, split):
        raise ConnectionError("Couldn't reach 'someone/set' on the Hub (LocalEntryNotFoundError)")
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub to download 'someone/set'"):
        load_stories("someone/set")

    def other(source, split):
        raise OSError("disk full\nsecond line")
    monkeypatch.setattr(datasets, "load_dataset", other)
    with pytest.raises(UserError, match="^could not load data set 'someone/set' from the hub: disk full$"):
        load_stories("someone/set")


def test_a_hub_name_is_never_taken_for_a_local_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(data, "_load_from_hub", lambda source, split: seen.append((source, split)) or "hub")
    assert load_stories("someone/set", split="validation") == "hub" and seen == [("someone/set", "validation")]
    for local in ("./someone/set", "~/no-such-folder-here", "/no/such/set", "missing.jsonl"):
        with pytest.raises(UserError, match="no such file or folder"):
            load_stories(local)
    assert len(seen) == 1


@pytest.mark.parametrize("endpoint, address", [("https://huggingface.co", ("huggingface.co", 443)),
                                               ("http://mirror.example", ("mirror.example", 80)),
                                               ("http://127.0.0.1:9", ("127.0.0.1", 9))])
def test_the_hub_check_knocks_on_the_endpoints_port(monkeypatch, endpoint, address):
    from huggingface_hub import constants
    knocked = []

    def connect(where, timeout):
        knocked.append((where, timeout))
        raise OSError("refused")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(data.socket, "create_connection", connect)
    assert data._hub_reachable(timeout=2.5) is False and knocked == [(address, 2.5)]


def test_a_bad_small_file_is_one_line_with_no_progress_bars_above_it(tmp_path, capfd):
    """`datasets` draws a "Generating train split" bar for every local file; for a small one it only
    flashes by, and above a one-line error it is noise. Large files keep their bars."""
    import datasets

    from lmkit.data import QUIET_BELOW_BYTES
    path = tmp_path / "stories.jsonl"
    path.write_text("".join(json.dumps({"story": f"tale {n}"}) + "\n" for n in range(20)))
    datasets.enable_progress_bars()
    capfd.readouterr()
    with pytest.raises(UserError, match="has no 'text' column"):
        load_stories(str(path))
    assert "Generating train split" not in capfd.readouterr().err
    assert datasets.is_progress_bar_enabled()  # put back as it was
    assert 2**20 <= QUIET_BELOW_BYTES <= 2**30


def test_the_sample_names_its_splits():
    from lmkit.data import sample_file
    with pytest.raises(UserError, match=r"^the bundled sample has no 'test' split, only train and validation$"):
        sample_file("test")
