"""Loading the stories: the hub data set, a local file or folder, or the sample bundled in data/.

`load_stories` returns a `datasets.Dataset` with one 'text' column, one story a row, whatever the
source: a hub name, a .txt file (stories separated by <|endoftext|> lines or by blank lines, maybe
gzipped), a folder of such files, json/jsonl/parquet with a 'text' column, or "sample".
"""

import contextlib
import gzip
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from lmkit.settings import UserError, first_line
from lmkit.text import EOT

HUB_DATASET = "roneneldan/TinyStories"  # the scripts' default DATASET
LOCAL_FORMATS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
GZIP_FORMATS = {"text", "json"}  # also read gzipped (stories.txt.gz), as downloads often come

# DATASET="sample" is the real TinyStories sample that ships in the repo (its README gives source and
# license): found from any working directory, with splits like the hub set's.
SAMPLE = "sample"
QUIET_BELOW_BYTES = 64 * 2**20  # local data smaller than this loads without progress bars
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "tinystories-sample"
SAMPLE_SPLITS = {"train": "train.txt.gz", "validation": "valid.txt.gz"}


def hub_offline(environ=os.environ):
    """HF_HUB_OFFLINE read as huggingface_hub reads it: 1/true/yes/on is offline; 0, empty or unset is not."""
    return environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "TRUE", "YES", "ON")


def _hub_reachable(timeout=5.0):
    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_error(name):
    return UserError(
        f"cannot reach the Hugging Face hub to download {name!r}; point DATASET at a local copy instead, "
        f"e.g. --dataset=TinyStories-train.txt (a .txt with stories separated by {EOT} or blank lines, "
        f"a folder of them, or .json/.jsonl/.parquet with a 'text' column), or --dataset={SAMPLE} for the "
        f"small sample that comes with the repo")


def local_format(path):
    """How `datasets` reads a data file ('text', 'json' or 'parquet'), from its name; None if it cannot."""
    name = Path(path).name.lower()
    compressed = name.endswith(".gz")
    kind = LOCAL_FORMATS.get(Path(name.removesuffix(".gz")).suffix)
    return None if compressed and kind not in GZIP_FORMATS else kind


def open_text(path, mode="rt"):
    """A data file for reading ("rt": UTF-8 text, "rb": bytes), gzipped (stories.txt.gz) or not."""
    if str(path).lower().endswith(".gz"):
        return gzip.open(path, mode, **({"encoding": "utf-8"} if "t" in mode else {}))
    return open(path, mode, **({"encoding": "utf-8"} if "t" in mode else {}))


def sample_file(split="train"):
    """The file of the bundled sample that holds `split` ('train' or 'validation')."""
    if split not in SAMPLE_SPLITS:
        raise UserError(f"the bundled sample has no {split!r} split, only {' and '.join(SAMPLE_SPLITS)}")
    path = SAMPLE_DIR / SAMPLE_SPLITS[split]
    if not path.is_file():
        raise UserError(f"the bundled sample is missing: no {path} (it comes with the repository)")
    return path


def _local_files(path):
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and local_format(p))
        if not files:
            raise UserError(f"folder {path} has no .txt, .json, .jsonl or .parquet files (nor .txt.gz, .json.gz, "
                            f".jsonl.gz)")
        return files
    if not local_format(path):
        raise UserError(f"{path}: unknown file type; use .txt, .json, .jsonl or .parquet (.txt, .json and "
                        f".jsonl may be gzipped: .txt.gz)")
    return [path]


def stories_in_txt(paths, stamps=None):
    """Yield the stories of txt files (.txt or .txt.gz): separated by <|endoftext|> lines, else by blank lines.

    `stamps` is unused here: it only makes the `datasets` cache key change when a file does.
    """
    for path in paths:
        try:
            yield from _stories_in_file(path)
        except (OSError, EOFError) as error:  # a damaged .gz shows only when it is read, maybe part-way
            raise OSError(f"cannot read {path}: {error}") from None


def _stories_in_file(path):
    with open_text(path) as handle:
        uses_marker = any(EOT in line for line in handle)
        handle.seek(0)
        lines = []
        for line in handle:
            if uses_marker and EOT in line:
                before, _, after = line.partition(EOT)
                story = "".join(lines + [before]).strip()
                lines = [after]
            elif not uses_marker and not line.strip():
                story = "".join(lines).strip()
                lines = []
            else:
                lines.append(line)
                continue
            if story:
                yield {"text": story}
        story = "".join(lines).strip()
        if story:
            yield {"text": story}


def _read(handle, path, size):
    try:
        return handle.read(size)
    except (OSError, EOFError) as error:  # a damaged .gz shows only when it is read, maybe part-way
        raise ValueError(f"cannot read {path}: {error}") from None


def check_text_file(path, chunk_size=1 << 24, keep=False):
    """A ValueError naming `path` unless it is UTF-8 text: binary or Latin-1 data would be silently
    mangled into words otherwise. With `keep`, the text: a pipe (/dev/stdin, <(...)) can be read once only."""
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, text = 0, []
    with open_text(path, "rb") as handle:  # a .gz file's text, not its compressed bytes
        while chunk := _read(handle, path, chunk_size):
            if b"\0" in chunk:
                raise ValueError(f"{path} is a binary file, not text (a zero byte at offset "
                                 f"{offset + chunk.index(bytes(1))})")
            try:
                decoded = decoder.decode(chunk)
                if keep:
                    text.append(decoded)
            except UnicodeDecodeError as error:
                raise ValueError(f"{path} is not UTF-8 text (byte {offset + error.start}): convert it, "
                                 f"e.g. iconv -f latin1 -t utf-8") from None
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text (it ends inside a character)") from None
    return "".join(text) if keep else None


def load_stories(source, split="train"):
    """A `datasets.Dataset` with a 'text' column from a hub name, a file, a folder or "sample"."""
    path = Path(source).expanduser()
    if source == SAMPLE and not path.exists():  # a file or folder named "sample" is the user's own
        return load_stories(str(sample_file(split)))
    looks_local = path.exists() or local_format(path) or source.startswith((".", "/", "~"))
    if not looks_local:
        return _load_from_hub(source, split)
    if not path.exists():
        raise UserError(f"{source}: no such file or folder")
    files = _local_files(path)
    kinds = {local_format(f) for f in files}
    if len(kinds) > 1:
        raise UserError(f"{source} mixes file types ({', '.join(sorted(kinds))}); use one kind per folder")
    kind = kinds.pop()
    if all(f.stat().st_size == 0 for f in files):
        raise UserError(f"{source} is empty: it has no stories")
    with _quiet_progress(sum(f.stat().st_size for f in files) < QUIET_BELOW_BYTES):
        dataset = _load_txt(source, files) if kind == "text" else _load_table(source, files, kind)
    if len(dataset) == 0:
        raise UserError(f"{source} has no stories in it")
    return dataset


@contextlib.contextmanager
def _quiet_progress(quiet):
    """No "Generating train split" bars from `datasets` while `quiet`: for a small file they flash by
    in a second, and when the file is bad they would stand above its one-line error."""
    import datasets
    was_shown = datasets.is_progress_bar_enabled()
    if quiet and was_shown:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if quiet and was_shown:
            datasets.enable_progress_bars()


def _load_from_hub(source, split):
    import datasets
    if not hub_offline() and not _hub_reachable():
        raise _hub_error(source)
    try:
        return datasets.load_dataset(source, split=split)
    except (ConnectionError, OSError) as error:
        if "reach" in str(error) or "connect" in str(error).lower() or "offline" in str(error).lower():
            raise _hub_error(source) from None
        raise UserError(f"could not load data set {source!r} from the hub: {str(error).splitlines()[0]}") from None
    except ValueError as error:  # e.g. an unknown split
        raise UserError(f"could not load data set {source!r}: {str(error).splitlines()[0]}") from None


def _load_txt(source, files):
    import datasets
    # from_generator caches the stories as Arrow, keyed on its arguments: the files' sizes and
    # modification times (of the .gz itself, when gzipped) are among them so that an edited file
    # is read again
    stamps = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime) for f in files]
    for file in files:  # before `datasets`, which would wrap the message in its own traceback
        try:
            check_text_file(file)
        except ValueError as error:
            raise UserError(str(error)) from None
    try:
        return datasets.Dataset.from_generator(
            stories_in_txt, gen_kwargs={"paths": [str(f) for f in files], "stamps": stamps},
            features=datasets.Features({"text": datasets.Value("string")}))
    except ValueError:  # `datasets` refuses a generator that yields nothing
        raise UserError(f"{source} has no stories in it") from None
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, OSError):  # from stories_in_txt: names the file
            raise UserError(str(error.__cause__)) from None
        raise


def _load_table(source, files, kind):
    """json, jsonl or parquet files with a 'text' column."""
    import datasets
    library_log = datasets.logging.get_logger("datasets")
    level = library_log.level
    library_log.setLevel("CRITICAL")  # its "Failed to load JSON..." line would come before ours, below
    try:
        dataset = datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    except Exception as error:  # pyarrow and `datasets` raise their own types for a corrupt file
        cause = error.__cause__ or error
        raise UserError(f"cannot read {source} as {kind}: {first_line(cause)}") from None
    finally:
        library_log.setLevel(level)
    if "text" not in dataset.column_names:
        raise UserError(f"{source} has no 'text' column (columns: {', '.join(dataset.column_names)})")
    kind_of_text = getattr(dataset.features["text"], "dtype", "a nested structure")
    if kind_of_text not in ("string", "large_string"):
        raise UserError(f"{source}: its 'text' column holds {kind_of_text}, not strings")
    # a story with no text teaches nothing (and a set of them would give a tokenizer of special tokens)
    return dataset.select_columns(["text"]).filter(
        lambda texts: [bool(text and text.strip()) for text in texts], input_columns="text", batched=True)
