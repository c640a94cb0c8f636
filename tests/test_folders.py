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


def test_thread_policy_one_per_idle_core_unless_the_user_chose():
    from lmkit.folders import cpu_threads, threads_for
    assert [threads_for(idle) for idle in (0.0, 0.6, 1.0, 1.6, 1.75, 2.0, 3.9)] == [1, 1, 1, 1, 2, 2, 4]
    assert cpu_threads(0, environ={}, idle_cores=2.0) == (2, "automatic: 2.0 cores idle (THREADS=N to choose)")
    assert cpu_threads(0, environ={}, idle_cores=0.1)[0] == 1  # two other programs busy on two cores
    assert cpu_threads(3, environ={"OMP_NUM_THREADS": "2"}) == (3, "THREADS=3")  # the setting wins
    assert cpu_threads(0, environ={"OMP_NUM_THREADS": "2"}) == (None, "OMP_NUM_THREADS=2")
    assert cpu_threads(0, environ={"MKL_NUM_THREADS": " 4 "}) == (None, "MKL_NUM_THREADS=4")
    assert cpu_threads(0, environ={"OMP_NUM_THREADS": ""}, idle_cores=1.0)[0] == 1  # set but empty: no choice


def test_idle_cores_sees_another_busy_program():
    """A busy neighbour takes a core: measured, not assumed (the machine's use less this process's)."""
    import subprocess
    import sys
    import time

    from lmkit.folders import IdleCores
    monitor = IdleCores()
    time.sleep(0.3)
    before = monitor.look()
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        monitor.look()
        time.sleep(0.6)
        during = monitor.look()
    finally:
        neighbour.kill()
    assert 0 <= during <= monitor.cores and during <= max(0.0, before - 0.5)


def test_thread_policy_sets_torch_only_on_the_cpu(monkeypatch):
    import torch

    from lmkit import folders
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: calls[-1] if calls else 9)
    monkeypatch.setattr(folders, "cpu_threads",
                        lambda setting: (setting or 1, "why") if setting != 7 else (None, "env"))
    assert folders.use_cpu_threads(0, "cuda") == "" and calls == []
    assert folders.use_cpu_threads(0, "cpu") == "CPU threads: 1 (why)"
    assert folders.use_cpu_threads(2, "cpu") == "CPU threads: 2 (why)" and calls == [1, 2]
    assert folders.use_cpu_threads(7, "cpu") == "CPU threads: 2 (env)" and calls == [1, 2]  # torch's own choice
