"""lmkit.folders: loading saved tokenizers and models, the run record, fingerprints, devices.

What a script does with a missing or foreign folder is in test_guards.py.
"""

import pytest

from lmkit.folders import (RUN_RECORD, load_model, peak_memory, read_run_record, run_record, vocabulary_fingerprint,
                           write_run_record)
from lmkit.settings import UserError


def test_load_model_is_ready_to_generate(model_dir):
    model, tokenizer = load_model(model_dir, device="cpu")
    assert not model.training and model.config.use_cache is True and model.device.type == "cpu"
    assert model.config.vocab_size == len(tokenizer) and tokenizer.eos_token == "<|endoftext|>"


def test_run_record_round_trips_and_a_corrupt_one_is_a_user_error(tmp_path):
    assert read_run_record(tmp_path) is None  # a model from elsewhere has none
    record = run_record({"N_EMBD": 32, "DATASET": "sample"}, "sha256:abc")
    assert record == {"tokenizer": "sha256:abc", "settings": {"N_EMBD": 32, "DATASET": "sample"}}
    write_run_record(tmp_path, record)
    assert read_run_record(tmp_path) == record
    (tmp_path / RUN_RECORD).write_text("{cut short")
    with pytest.raises(UserError, match=f"{RUN_RECORD} is corrupt .*delete it"):
        read_run_record(tmp_path)


def test_vocabulary_fingerprint_depends_on_every_word_and_id_not_on_order():
    vocabulary = {"▁the": 3, "▁and": 4, ".": 5}
    fingerprint = vocabulary_fingerprint(vocabulary)
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 32
    assert vocabulary_fingerprint(dict(reversed(list(vocabulary.items())))) == fingerprint
    assert vocabulary_fingerprint({"▁the": 4, "▁and": 3, ".": 5}) != fingerprint  # two ids swapped
    assert vocabulary_fingerprint({**vocabulary, "!": 6}) != fingerprint


def test_peak_memory_on_a_cpu_is_the_resident_set_in_bytes():
    peak, what = peak_memory("cpu")
    assert what == "resident memory" and peak > 2**20  # this process holds torch: well over a MiB
