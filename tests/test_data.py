import json
import time

import pytest

import corpus
from common import UserError, load_stories, stories_in_txt


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
    import pandas as pd
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


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "missing.txt"), "no such file"),
    (lambda p: (p / "empty.txt").write_text("") and str(p / "empty.txt") or str(p / "empty.txt"), "empty"),
    (lambda p: (p / "blank.txt").write_text("\n\n  \n") and str(p / "blank.txt"), "no stories"),
    (lambda p: (p / "x.csv").write_text("a") and str(p / "x.csv"), "unknown file type"),
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
    from common import hub_offline
    assert hub_offline({} if value is None else {"HF_HUB_OFFLINE": value}) is offline


def test_hf_hub_offline_0_still_checks_the_hub_first(monkeypatch):
    import common
    checked = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(common, "_hub_reachable", lambda: checked.append(True) or False)
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub"):
        load_stories("roneneldan/TinyStories")
    assert checked  # "0" means online: the quick reachability check runs, no minutes of retries


def test_hf_hub_offline_0_without_network_fails_in_one_line():
    import os
    import subprocess
    import sys

    from conftest import ROOT
    # retrying took 24-28 s: the time limit (not a timed assert) only catches that
    result = subprocess.run([sys.executable, "train_tokenizer.py", "--tokenizer_dir=/nonexistent/tok"], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "0"}, timeout=30)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "cannot reach the Hugging Face hub" in result.stderr
