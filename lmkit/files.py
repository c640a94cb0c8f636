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

from lmkit.settings import UserError

LOCK = ".lock"


def _cannot_write(path, error):
    if getattr(error, "errno", None) == 28:  # ENOSPC
        return UserError(f"cannot write {path}: the disk is full; free some space (nothing was half-written)")
    return UserError(f"cannot write {path}: {error.strerror or error}")


def replace_atomically(path, write):
    """Call write(temporary path) and rename the result over `path`; a UserError if that fails, and
    then no temporary file is left behind."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _cannot_write(path, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path, text):
    replace_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def save_pretrained(thing, folder):
    """`thing.save_pretrained` (a tokenizer), each of its files renamed into `folder` only once written whole."""
    folder = Path(folder)
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".saving-") as temporary:
            thing.save_pretrained(temporary)
            for item in sorted(Path(temporary).iterdir()):
                os.replace(item, folder / item.name)
    except OSError as error:
        raise _cannot_write(folder, error) from None


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
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)


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
            path.unlink(missing_ok=True)
