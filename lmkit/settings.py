"""Settings and the command line: what every script's `run_script(main, globals())` does.

Each script keeps its settings as UPPERCASE constants at the top and ends with
`run_script(main, globals())`, which reads `--name=value` overrides, checks their types and turns
every `UserError` into one line on stderr, as it does a full disk, a folder that cannot be written
and running out of memory wherever they happen. The range checks (`at_least`, `within`,
`check_writable`) raise the same error before any long work starts.
"""

import errno
import json
import logging
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace


class UserError(Exception):
    """A problem the user can fix; scripts print it as one line and exit non-zero."""


DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
# torch.save reports a failed write with no errno, only in words like these
TORCH_WRITE_FAILED = ("PytorchStreamWriter failed writing", "unexpected pos", "iostream error")


def free_bytes(path):
    """Free space for this user on the file system that holds `path` (or its nearest existing folder)."""
    import shutil
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def write_error_code(error, path=None):
    """The errno of a failed write, whichever library met it (an OSError; safetensors' "(os error 28)";
    torch's writer, which gives none: a full disk if under 16 MiB is left at `path`), or None when
    `error` is no failed write."""
    if isinstance(error, OSError):
        return error.errno if error.errno in DISK_FULL | NOT_WRITABLE else None
    message = str(error)
    if (match := re.search(r"\(os error (\d+)\)", message)) and int(match[1]) in DISK_FULL | NOT_WRITABLE:
        return int(match[1])
    if isinstance(error, RuntimeError) and any(words in message for words in TORCH_WRITE_FAILED):
        free = free_bytes(path) if path is not None else None
        return errno.ENOSPC if free is not None and free < 16 * 2**20 else errno.EIO
    return None


def cannot_write(path, error, then="run the same command again", code=None):
    """The UserError for a write of `path` that failed with `error` (its errno `code`, when
    write_error_code has told it already): what to do about a full disk or a folder that cannot be
    written, the library's own words otherwise."""
    code = code or write_error_code(error, path)
    if code in DISK_FULL:
        return UserError(f"cannot write {path}: the disk is full; free some space and {then}")
    if code in NOT_WRITABLE:
        return UserError(f"cannot write {path}: {os.strerror(code)}; make its folder writable (or choose "
                         f"another) and {then}")
    return UserError(f"cannot write {path}: {getattr(error, 'strerror', None) or first_line(error)}")


def is_out_of_memory(error):
    """torch's CUDA/MPS/CPU allocators and Python itself each say it their own way."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def _settings_block(namespace):
    """{NAME: comment} for the UPPERCASE assignments of a script's opening block, before the first import.

    The comment is the one that follows the assignment on its line: the same text a user reads when
    editing the block is what --help prints.
    """
    import ast
    import io
    import tokenize
    source = Path(namespace["__file__"]).read_text(encoding="utf-8")
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    block = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            break
        if isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper():
                    block[target.id] = comments.get(statement.end_lineno, "")
    return block


def _constants(namespace):
    """The settings of a script: the UPPERCASE assignments of its opening block, before the first import."""
    return {name: namespace[name] for name in _settings_block(namespace)}


def _parse_value(name, text, default):
    kind = type(default)
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--{name} takes true or false, not {text!r}")
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise UserError(f"--{name} takes a{'n integer' if kind is int else ' number'}, not {text!r}") from None
        if not math.isfinite(value):  # float() takes "nan" and "inf"; no setting means either
            raise UserError(f"--{name} takes a finite number, not {text!r}")
        return value
    if kind in (list, tuple):
        # a JSON list, or items separated by "|" (prompts contain commas)
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as error:
                raise UserError(f"--{name}: not a JSON list ({error})") from None
        else:
            items = [item.strip() for item in text.split("|") if item.strip()]
        return kind(str(item) for item in items)
    return text


def configure(namespace, argv):
    """The UPPERCASE constants of `namespace`, with `--name=value` overrides from argv applied."""
    config = _constants(namespace)
    names = ", ".join(f"--{k.lower()}" for k in config)
    for arg in argv:
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument {arg!r}: settings are given as --name=value; valid names: {names}")
        name, has_value, text = arg[2:].partition("=")
        key = name.replace("-", "_").upper()
        if key not in config:
            raise UserError(f"unknown setting --{name}; valid names: {names}")
        if not has_value:
            if isinstance(config[key], bool):  # a bare --flag means true
                text = "true"
            else:
                raise UserError(f"--{name} needs a value: --{name}=VALUE")
        config[key] = _parse_value(name, text, config[key])
    return SimpleNamespace(**config)


def print_help(namespace):
    print((namespace.get("__doc__") or "").strip())
    print("\nSettings (--name=value; the default, then what it does):")
    block = _settings_block(namespace)
    for key, value in _constants(namespace).items():
        print(f"  --{key.lower()}={value!r}" + (f"\n      {block[key]}" if block[key] else ""))


def run_script(main, namespace, argv=None, errors=(), memory_hint="use smaller settings"):
    """Entry point of every script: parse overrides, run main, report UserErrors in one line.

    `errors` are the library's own error types (e.g. pilish.PilishError) whose message is just as
    much meant for the user. A full disk or a folder that cannot be written (an OSError from any
    write) and running out of memory are one line too; `memory_hint` says which settings to lower.
    """
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in argv):
        print_help(namespace)
        return
    try:
        main(configure(namespace, argv))
    except (UserError, *errors) as error:
        fail(error)
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's usual status, so `a && b` stops
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `script | head`: the reader has all it wants; stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail too
        sys.exit(141)
    except Exception as error:
        if is_out_of_memory(error):
            fail(f"out of memory ({first_line(error)}): {memory_hint}")
        if write_error_code(error) in DISK_FULL | NOT_WRITABLE:
            fail(cannot_write(getattr(error, "filename", None) or "a file", error))
        raise


class _DropMessages(logging.Filter):
    def __init__(self, texts):
        super().__init__()
        self.texts = texts

    def filter(self, record):
        return not any(text in record.getMessage() for text in self.texts)


def drop_warnings(logger_name, *texts):
    """Drop a library's log records that contain any of `texts`: warnings a user can do nothing about
    (once per logger and texts, however often it is called)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(existing, _DropMessages) and existing.texts == texts for existing in logger.filters):
        logger.addFilter(_DropMessages(texts))


def fail(error):
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)


def at_least(config, minimum, *names):
    """A UserError naming the first of the settings `names` below `minimum`."""
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            raise UserError(f"{name} must be at least {minimum}, not {value}")


def within(config, name, low, high, *, low_open=False, high_open=False):
    """A UserError unless low <= setting <= high (strictly on an open side)."""
    value = getattr(config, name)
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise UserError(f"{name} must lie in {interval}, not {value}")


# numpy takes seeds in [0, 2**32), and transformers.set_seed seeds numpy along with torch
SEED_RANGE = (0, 2**32 - 1)


def check_seed_and_threads(config):
    """SEED in the range every library takes, THREADS (0 = automatic) at most this machine's cores."""
    within(config, "SEED", *SEED_RANGE)
    within(config, "THREADS", 0, os.cpu_count() or 1)


def check_writable(path, what, folder=True):
    """A UserError now, before any long work, unless `path` (a folder, created if missing, or a file)
    can be written; `what` names the setting in the message."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{what}={path} is a file, not a folder: choose another {what}")
    if not folder and path.is_dir():
        raise UserError(f"{what}={path} is a folder, not a file: give a file name")
    where = path if folder else path.parent
    if not folder and not where.is_dir():
        raise UserError(f"{what}={path}: folder {where} does not exist")
    try:
        if folder:
            path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=where):  # os.access says yes to root on a read-only mount
            pass
        if not folder and path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise UserError(f"cannot write {what}={path}: {error.strerror or error}") from None




def next_command(script, **settings):
    """'python SCRIPT --name=value ...' for the settings given as NAME=(value, default) whose value is
    not the default: the hint a script ends with carries the options the user passed."""
    import shlex
    options = [f"--{name.lower()}={value}" for name, (value, default) in settings.items() if value != default]
    return shlex.join(["python", script, *options])


def first_line(error):
    """The first line of an error's message, for a one-line report of a library's long error."""
    if isinstance(error, KeyError):  # its message is only the key
        return f"no {error} in it"
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
