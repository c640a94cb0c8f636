"""lmkit.files: atomic writes and the one-writer lock."""

import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lmkit import files, settings
from lmkit.settings import UserError


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def fails_half_way(temporary):
        temporary.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="cannot write .*metrics.json: the disk is full"):
        files.replace_atomically(target, fails_half_way)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    def interrupted(temporary):
        temporary.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while writing: the same
        files.replace_atomically(target, interrupted)
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1
    files.write_text(target, "new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_save_pretrained_moves_whole_files_into_place(tmp_path):
    class Thing:
        def save_pretrained(self, folder):
            # beside the files it replaces, so each rename stays on one filesystem and is atomic; named
            # .saving-*, which the upload list (lmkit/publish.py) leaves out should a kill leave it behind
            assert Path(folder).parent == tmp_path / "out" and Path(folder).name.startswith(".saving-")
            for name in ("a.json", "b.json"):
                assert not (tmp_path / "out" / name).exists()  # nothing appears in place while writing
                open(os.path.join(folder, name), "w").write(name)

    (tmp_path / "out").mkdir()
    files.save_pretrained(Thing(), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "b.json"]


def test_a_second_writer_is_refused_with_the_first_named(tmp_path):
    with files.folder_lock(tmp_path, "MODEL_DIR"):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", holder["started"])  # a date a reader knows
        umask = os.umask(0o022)
        os.umask(umask)
        assert (tmp_path / ".lock").stat().st_mode & 0o777 == 0o644 & ~umask  # rw-r--r--: a file, never run
        with pytest.raises(UserError, match=f"MODEL_DIR={tmp_path} is in use by another run \\(pid {os.getpid()} "
                                            f"on {socket.gethostname()}, since .*delete .*\\.lock if that run is gone"):
            with files.folder_lock(tmp_path, "MODEL_DIR"):
                pass
        assert (tmp_path / ".lock").exists()  # the refused run leaves the holder's lock alone
    assert not (tmp_path / ".lock").exists()


def test_a_lock_whose_run_is_gone_is_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(), "started": "earlier"}))
    with files.folder_lock(tmp_path, "MODEL_DIR"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"pid": 1, "host": "another-machine", "started": "earlier"}))
    with pytest.raises(UserError, match="pid 1 on another-machine"):  # cannot tell: the user decides
        with files.folder_lock(tmp_path, "MODEL_DIR"):
            pass
    lock.write_text("")  # cut while being written, moments ago: not yet stale
    with pytest.raises(UserError, match="in use by another run"):
        with files.folder_lock(tmp_path, "MODEL_DIR"):
            pass
    os.utime(lock, (0, 0))  # ... and long ago: stale
    with files.folder_lock(tmp_path, "MODEL_DIR"):
        pass


def test_a_save_that_fails_names_the_folder(tmp_path):
    class Failing:
        def save_pretrained(self, folder):
            raise OSError(errno.EACCES, "Permission denied")

    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match=f"cannot write {tmp_path / 'out'}: Permission denied"):
        files.save_pretrained(Failing(), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # its temporary folder is gone too


@pytest.mark.parametrize("pid", ["not-a-number", 10**30])
def test_a_lock_with_a_pid_that_cannot_be_checked_is_not_taken_over(tmp_path, pid):
    (tmp_path / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"}))
    with pytest.raises(UserError, match="in use by another run"):
        with files.folder_lock(tmp_path, "MODEL_DIR"):
            pass
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == pid  # left as it was


def test_a_lock_that_cannot_be_written_whole_is_not_left_behind(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files.json, "dump", full)
    with pytest.raises(UserError, match="the disk is full"):
        with files.folder_lock(tmp_path, "MODEL_DIR"):
            pytest.fail("the block ran without its lock")
    assert not (tmp_path / files.LOCK).exists()


def test_a_lock_that_cannot_be_removed_does_not_hide_the_runs_own_error(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="the run's own error"):
        with files.folder_lock(tmp_path, "MODEL_DIR"):
            monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(
                OSError(errno.EROFS, "Read-only file system")))
            raise ValueError("the run's own error")


# what each library says when a write fails (taken from a full tmpfs): Python, safetensors and torch.save
PYTHON_FULL = OSError(errno.ENOSPC, "No space left on device")
SAFETENSORS_FULL = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


@pytest.mark.parametrize("error, free, code", [
    (PYTHON_FULL, None, errno.ENOSPC),
    (OSError(errno.EROFS, "Read-only file system"), None, errno.EROFS),
    (SAFETENSORS_FULL, None, errno.ENOSPC),
    (Exception("Error while serializing: I/O error: Permission denied (os error 13)"), None, errno.EACCES),
    (TORCH_FULL, 0, errno.ENOSPC),
    (TORCH_FULL, 2**30, errno.EIO),  # torch gives no errno: with room left, it is not the disk
    (OSError(errno.ENOENT, "No such file or directory"), 0, None),
    (RuntimeError("shapes cannot be multiplied"), 0, None),
    (Exception("Error while deserializing header (os error 28 is not here)"), 0, None),
])
def test_a_failed_write_is_told_from_whichever_library_met_it(error, free, code, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "free_bytes", lambda path: free)
    assert settings.write_error_code(error, tmp_path) == code


def test_free_bytes_looks_at_the_nearest_folder_that_exists(tmp_path):
    import shutil
    assert abs(settings.free_bytes(tmp_path / "not" / "yet") - shutil.disk_usage(tmp_path).free) < 2**24


def test_a_failed_write_tells_the_user_to_run_the_same_command_again(tmp_path):
    """What a user reads on a full disk or a read-only folder: nothing was half-written, so the same command
    is the way on."""
    def full(temporary):
        raise OSError(errno.ENOSPC, "No space left on device")

    def read_only(temporary):
        raise OSError(errno.EROFS, "Read-only file system")

    target = tmp_path / "metrics.json"
    with pytest.raises(UserError) as error:
        files.replace_atomically(target, full)
    assert str(error.value) == (f"cannot write {target}: the disk is full; free some space and run the same "
                                f"command again (nothing was half-written)")
    with pytest.raises(UserError) as error:
        files.replace_atomically(target, read_only)
    assert str(error.value).endswith("make its folder writable (or choose another) and run the same command again "
                                     "(nothing was half-written)")

    class Full:
        def save_pretrained(self, folder):
            full(folder)

    with pytest.raises(UserError) as error:
        files.save_pretrained(Full(), tmp_path)
    assert str(error.value) == (f"cannot write {tmp_path}: the disk is full; free some space and run the same "
                                f"command again (nothing was half-written)")


def test_a_lock_that_names_no_pid_is_not_taken_over(tmp_path, monkeypatch):
    """A lock of this host that names no pid cannot be checked: like one whose pid is no number, it is
    left to the user. os.kill is a stand-in, so the test is the same on every machine: every process or
    group that a number names is gone, and pid -1 (every process we may signal) always reaches one."""
    asked = []

    def kill(pid, signal):
        asked.append((pid, signal))
        if pid != -1:
            raise ProcessLookupError(errno.ESRCH, "No such process")

    monkeypatch.setattr(files.os, "kill", kill)
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "started": "earlier"}))
    with pytest.raises(UserError) as refused:
        with files.folder_lock(tmp_path, "MODEL_DIR"):
            pass
    assert f"is in use by another run (pid None on {socket.gethostname()}, since earlier)" in str(refused.value)
    assert asked and json.loads(lock.read_text()) == {"host": socket.gethostname(), "started": "earlier"}
    assert {signal for pid, signal in asked} == {0}  # signal 0 asks whether a process exists; any other is sent
    lock.write_text(json.dumps({"pid": 12345, "host": socket.gethostname(), "started": "earlier"}))
    with files.folder_lock(tmp_path, "MODEL_DIR"):  # the stand-in does tell a gone run: its lock is taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_folder_that_cannot_take_the_temporary_one_is_named(tmp_path, monkeypatch):
    """The disk already too full for save_into's temporary folder: the message names the folder."""
    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.tempfile, "TemporaryDirectory", no_room)
    with pytest.raises(UserError) as error:
        files.save_into(tmp_path, lambda temporary: None)
    assert str(error.value) == (f"cannot write {tmp_path}: the disk is full; free some space and run the same "
                                f"command again (nothing was half-written)")
