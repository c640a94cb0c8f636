"""Writing files safely: a file we write appears whole or not at all, and one run writes a folder at a time.

Every file is written to a temporary name in its own folder and renamed over the old one
(`os.replace`, atomic on one file system): a kill, a full disk or a crash leaves the old file or the
new one, never half of either. A folder that a run writes carries a `.lock` with the run's pid and
host while it runs; a second run meets it and says which run holds it, and a lock whose run is gone
(same host, no such process) is taken over.
"""

import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from lmkit.settings import UserError, cannot_write, write_error_code

LOCK = ".lock"


def _cannot_write(path, error):
    return cannot_write(path, error, then="run the same command again (nothing was half-written)")


def replace_atomically(path, write):
    """Call write(temporary path) and rename the result over `path`; a UserError if that fails, and
    then no temporary file is left behind."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        failure = _cannot_write(path, error) if write_error_code(error, path) else None  # before the space is freed
        temporary.unlink(missing_ok=True)
        if failure:
            raise failure from None
        raise


def write_text(path, text):
    replace_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def save_into(folder, save):
    """Call save(temporary folder) and rename each file it wrote into `folder`, each only once written
    whole: a full disk or a kill mid-save leaves the old files, never half of a new one."""
    folder = Path(folder)
    failure = None
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".saving-") as temporary:
            try:
                save(temporary)
                for item in sorted(Path(temporary).iterdir()):
                    os.replace(item, folder / item.name)
            except Exception as error:
                if not write_error_code(error, temporary):
                    raise
                failure = _cannot_write(folder, error)  # told while the half-written files still fill the disk
    except OSError as error:
        failure = _cannot_write(folder, error)
    if failure:
        raise failure from None


def save_pretrained(thing, folder):
    """`thing.save_pretrained(folder)` (a tokenizer or a model), through `save_into`."""
    save_into(folder, thing.save_pretrained)


def _holder(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_stale(holder, path):
    """The run that wrote the lock is gone: on this host and no such process, or the lock unreadable
    and older than a minute (a run killed while writing it)."""
    if holder is None:
        try:
            return time.time() - path.stat().st_mtime > 60
        except OSError:
            return True
    if holder.get("host") != socket.gethostname():
        return False  # another machine's run: only its user can tell
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def _take(path):
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)
    except OSError:  # a full disk: no empty lock left to hold the folder for the next run
        Path(path).unlink(missing_ok=True)
        raise


@contextmanager
def folder_lock(folder, what, enabled=True):
    """Hold `folder`/.lock while the block runs; a UserError naming the run that holds it already."""
    if not enabled:
        yield
        return
    path = Path(folder) / LOCK
    for attempt in range(2):
        try:
            _take(path)
            break
        except FileExistsError:
            holder = _holder(path)
            if attempt == 0 and _is_stale(holder, path):
                path.unlink(missing_ok=True)  # its run is gone
                continue
            who = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}" if holder else "?"
            raise UserError(f"{what}={folder} is in use by another run ({who}): wait for it to finish, or "
                            f"delete {path} if that run is gone") from None
        except OSError as error:
            raise _cannot_write(path, error) from None
    try:
        yield
    finally:
        if (_holder(path) or {}).get("pid") == os.getpid():
            try:
                path.unlink(missing_ok=True)
            except OSError:  # a folder made read-only: the run's own error says so, and a later run finds
                pass         # this lock stale (its pid is gone) and takes it over
