"""lmkit.folders: loading saved tokenizers and models, the run record, fingerprints, devices.

What a script does with a missing or foreign folder is in test_guards.py.
"""

import sys
from pathlib import Path

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


def resident_bytes_now():
    """This process's resident set now, in bytes, from /proc (pages times the page size)."""
    import os
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def physical_memory_bytes():
    import os
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc (Linux)")
def test_peak_memory_on_a_cpu_is_the_resident_set_in_bytes():
    """The unit pinned directly: the peak is about what this process holds now, counted in bytes by
    another route (the kernel updates the peak lazily: allow 2x), and at most the machine's memory.
    KiB taken for bytes is 1024x too small, bytes scaled as KiB 1024x too large: neither fits,
    whatever this process's size."""
    now = resident_bytes_now()
    peak, what = peak_memory("cpu")
    assert what == "resident memory"
    assert now / 2 <= peak <= physical_memory_bytes()


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
        neighbour.wait()  # no zombie: mutmut reaps any child of its process and fails on one it did not start
    # a whole core less, or none left either way (on a machine already busy, `before` is near 0); the
    # quarter core is the measurement's own noise, which failed this test beside two busy programs
    assert 0 <= during <= monitor.cores and during <= max(0.0, before - 0.5) + 0.25


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


def test_the_vocabulary_fingerprint_is_a_fixed_function_of_the_words():
    """Saved run records hold it: any change to how it is computed makes every saved model look as if it
    were trained with another tokenizer. Non-ASCII words (the space mark, accents) included."""
    assert vocabulary_fingerprint({"▁the": 3, "▁café": 4, ".": 5, "[UNK]": 1}) == "sha256:33e77771d1d07eef17edc80bef80a35a"


def test_idle_cores_are_the_cores_less_what_other_programs_use():
    """The arithmetic, with psutil's two readings given: 2 cores, the machine 75% busy (1.5 cores), of
    which this process 0.5 core: other programs hold 1.0, so 1.0 is idle."""
    from lmkit.folders import IdleCores

    class Reading:
        def __init__(self, percent):
            self.percent = percent

        def cpu_percent(self, interval):
            return self.percent

    monitor = IdleCores.__new__(IdleCores)
    monitor.cores = 2
    monitor.process = Reading(50.0)

    class Machine(Reading):
        @staticmethod
        def cpu_count():
            return 2

    monitor.psutil = Machine(75.0)
    assert monitor.look() == 1.0
    monitor.psutil = Machine(100.0)
    monitor.process = Reading(0.0)
    assert monitor.look() == 0.0  # never below 0, never above the cores
    monitor.psutil, monitor.process = Machine(10.0), Reading(90.0)
    assert monitor.look() == 2.0


def test_peak_memory_without_the_resource_module_says_none(monkeypatch):
    """Windows has no `resource`: no figure, and the same words for what it would have measured."""
    import sys

    from lmkit.folders import peak_memory
    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` raises ImportError
    assert peak_memory("cpu") == (None, "resident memory")


def test_a_model_the_library_cannot_build_is_one_line_naming_why(model_dir, tmp_path):
    """A config.json edited by hand (3 heads do not divide a width of 32): the library's own reason, its
    first line, in the message."""
    import json
    import re
    import shutil
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = json.loads((folder / "config.json").read_text())
    assert (config["n_embd"], config["n_head"]) == (32, 2)
    (folder / "config.json").write_text(json.dumps({**config, "n_head": 3}))
    with pytest.raises(UserError) as error:
        load_model(folder, device="cpu")
    message = str(error.value)
    assert re.fullmatch(f"cannot load the model in {re.escape(str(folder))} \\(.*embed_dim.* must be divisible by "
                        f"num_heads .*32.*3.*\\): train it again", message), message
    assert "\n" not in message and "None" not in message


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
def test_a_corrupt_tokenizer_file_says_what_to_do_in_either_folder(tokenizer_dir, tmp_path, name):
    """In a tokenizer folder: train it again; in a model folder (config.json beside it): bring back the
    tokenizer the model was trained with."""
    import shutil

    from lmkit.folders import load_tokenizer
    for folder, remedy in ((tmp_path / "tok", "run train_tokenizer.py again"),
                           (tmp_path / "model", "copy the tokenizer the model was trained with back, or train the "
                                                "model again")):
        shutil.copytree(tokenizer_dir, folder)
        if folder.name == "model":
            (folder / "config.json").write_text("{}")
        (folder / name).write_text('{"cut short')
        with pytest.raises(UserError) as error:
            load_tokenizer(folder)
        assert str(error.value).startswith(f"{folder / name} is corrupt (") and str(error.value).endswith(remedy)


def test_training_threads_sleep_while_they_wait_only_where_no_core_is_idle(monkeypatch):
    """Beside busy programs that leave no core idle, training takes a thread per core that sleeps while
    it waits; otherwise the usual policy (one beside one busy program, spinning threads when quiet)."""
    from lmkit.folders import WAIT_POLICY, cpu_threads, training_threads
    assert [training_threads(idle, 2) for idle in (0.0, 0.4, 0.5, 1.0, 2.0)] == [
        (2, True), (2, True), (1, False), (1, False), (2, False)]
    assert training_threads(0.2, 4) == (4, True) and training_threads(0.0, 1) == (1, False)

    from lmkit import folders
    asked = []
    monkeypatch.setattr(folders, "ask_short_turns", lambda: asked.append(1) or len(asked) == 1)
    monkeypatch.delitem(sys.modules, "torch")  # as in train_model.py, before torch loads (restored after)
    environ = {}
    assert cpu_threads(0, environ, idle_cores=0.1, training=True, cores=2) == (
        2, "automatic: 0.1 cores idle, so threads that sleep while they wait, in short turns (THREADS=N to choose)")
    assert environ == {WAIT_POLICY: "PASSIVE"} and asked == [1]  # for OpenMP to read as torch loads
    environ = {}  # where the scheduler cannot be asked, the log does not say it was
    assert cpu_threads(0, environ, idle_cores=0.1, training=True, cores=2)[1].endswith(
        "threads that sleep while they wait (THREADS=N to choose)") and asked == [1, 1]
    asked.clear()
    for environ, kwargs in (({}, dict(idle_cores=1.0)),  # a core idle: one spinning thread, as before
                            ({}, dict(idle_cores=0.1, training=False)),  # generation: one thread
                            ({WAIT_POLICY: "ACTIVE"}, dict(idle_cores=0.1)),  # the user's own wait policy
                            ({"OMP_NUM_THREADS": "2"}, dict(idle_cores=0.1))):  # the user's own threads
        before = dict(environ)
        threads, _ = cpu_threads(0, environ, **{"training": True, "cores": 2, **kwargs})
        assert environ == before and threads in (1, None) and asked == []  # short turns only for sleeping threads
    monkeypatch.setitem(sys.modules, "torch", object())  # torch loaded already: too late to choose how threads wait
    environ = {}
    assert cpu_threads(0, environ, idle_cores=0.1, training=True, cores=2)[0] == 1 and environ == {}


def _turn_of_this_thread():
    """This thread's scheduler turn in ns as Linux reports it (sched_getattr), 0 where it keeps none."""
    import ctypes
    import struct
    attr = ctypes.create_string_buffer(56)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(ctypes.c_long(315), ctypes.c_long(0), attr, ctypes.c_long(56), ctypes.c_long(0)) == 0
    return struct.unpack("IIQiIQQQ", attr.raw[:48])[5]


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").machine() != "x86_64",
                    reason="the system call's number here is x86_64's")
def test_short_turns_are_asked_for_this_thread_and_the_threads_it_starts():
    """A real request, made in a thread of its own (the test's thread keeps its turn): the thread and
    one it starts afterwards (as torch starts its own) report the turn asked for; the others do not."""
    import threading

    from lmkit.folders import ask_short_turns
    seen = {}

    def child():
        seen["child"] = _turn_of_this_thread()

    def asker():
        seen["before"] = _turn_of_this_thread()
        seen["asked"] = ask_short_turns(250_000)
        seen["after"] = _turn_of_this_thread()
        started = threading.Thread(target=child)
        started.start()
        started.join()

    thread = threading.Thread(target=asker)
    thread.start()
    thread.join()
    assert seen["asked"] is True
    if seen["after"] == seen["before"] != 250_000:
        pytest.skip("this kernel takes the request but keeps no turn of a task's own (Linux < 6.12)")
    assert seen["after"] == seen["child"] == 250_000
    assert _turn_of_this_thread() != 250_000


def test_short_turns_request_keeps_the_thread_s_policy_and_nice_value(monkeypatch):
    """What is sent: struct sched_attr with SCHED_OTHER, this thread's nice value and the turn; no
    request under another policy (the user's SCHED_BATCH) or on a machine without a known call number;
    a refused call is no error, only False."""
    import struct

    from lmkit import folders
    calls = []

    def syscall(number, pid, attr, flags):
        calls.append((number, pid, struct.unpack("IIQiIQQQ", attr), flags))
        return result

    result = 0
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr(folders.os, "getpriority", lambda which, who: 5)
    monkeypatch.setattr(folders.os, "sched_getscheduler", lambda pid: 0)
    assert folders.ask_short_turns(400_000, syscall=syscall) is True
    assert calls == [(314, 0, (48, 0, 0, 5, 0, 400_000, 0, 0), 0)]
    result = -1
    assert folders.ask_short_turns(400_000, syscall=syscall) is False and len(calls) == 2
    monkeypatch.setattr(folders.os, "sched_getscheduler", lambda pid: 3)  # SCHED_BATCH
    assert folders.ask_short_turns(syscall=syscall) is False and len(calls) == 2
    monkeypatch.setattr(folders.os, "sched_getscheduler", lambda pid: 0)
    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    assert folders.ask_short_turns(syscall=syscall) is False and len(calls) == 2
