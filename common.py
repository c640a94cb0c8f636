"""Pieces shared by the four scripts: constants and overrides, data loading,
detokenizing, devices and loading what an earlier script saved.

Each script keeps its settings as UPPERCASE constants at the top and ends with
`run_script(main, globals())`, which reads `--name=value` overrides, checks
their types and turns every `UserError` into one line on stderr.
"""

import gzip
import hashlib
import json
import math
import os
import socket
import tempfile
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

EOT = "<|endoftext|>"  # separates stories, in the data set's txt files and in the token stream
UNK = "[UNK]"
PAD = "[PAD]"
SPECIAL_TOKENS = [PAD, UNK, EOT]
RUN_RECORD = "training_run.json"  # train_model.py's settings and tokenizer fingerprint, beside each model
# The tokenizer's mark for "a space comes before this token", as in SentencePiece: every word
# carries it, and it tells an opening quote from a closing one (train_tokenizer.py).
SPACE_MARK = "\u2581"  # ▁

LOCAL_FORMATS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
GZIP_FORMATS = {"text", "json"}  # also read gzipped (stories.txt.gz), as downloads often come

# DATASET="sample" is the real TinyStories sample that ships in the repo (its README gives source and
# license): found beside this file from any working directory, with splits like the hub set's.
SAMPLE = "sample"
SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "tinystories-sample"
SAMPLE_SPLITS = {"train": "train.txt.gz", "validation": "valid.txt.gz"}


class UserError(Exception):
    """A problem the user can fix; scripts print it as one line and exit non-zero."""


# ---------------------------------------------------------------- configuration

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


def run_script(main, namespace, argv=None, errors=()):
    """Entry point of every script: parse overrides, run main, report UserErrors in one line.

    `errors` are the library's own error types (e.g. pilish.PilishError) whose message is just as
    much meant for the user.
    """
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in argv):
        print_help(namespace)
        return
    try:
        main(configure(namespace, argv))
    except (UserError, *errors) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's usual status, so `a && b` stops
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)


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


# ---------------------------------------------------------------- data

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


def check_text_file(path, chunk_size=1 << 24):
    """A ValueError naming `path` unless it is UTF-8 text: binary or Latin-1 data would be silently
    mangled into words otherwise."""
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open_text(path, "rb") as handle:  # a .gz file's text, not its compressed bytes
        while chunk := _read(handle, path, chunk_size):
            if b"\0" in chunk:
                raise ValueError(f"{path} is a binary file, not text (a zero byte at offset "
                                 f"{offset + chunk.index(bytes(1))})")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                raise ValueError(f"{path} is not UTF-8 text (byte {offset + error.start}): convert it, "
                                 f"e.g. iconv -f latin1 -t utf-8") from None
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text (it ends inside a character)") from None


def load_stories(source, split="train"):
    """A `datasets.Dataset` with a 'text' column from a hub name, a file, a folder or "sample"."""
    import datasets

    path = Path(source).expanduser()
    if source == SAMPLE and not path.exists():  # a file or folder named "sample" is the user's own
        return load_stories(str(sample_file(split)))
    looks_local = path.exists() or local_format(path) or source.startswith((".", "/", "~"))
    if not looks_local:
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
    if not path.exists():
        raise UserError(f"{source}: no such file or folder")
    files = _local_files(path)
    kinds = {local_format(f) for f in files}
    if len(kinds) > 1:
        raise UserError(f"{source} mixes file types ({', '.join(sorted(kinds))}); use one kind per folder")
    kind = kinds.pop()
    if all(f.stat().st_size == 0 for f in files):
        raise UserError(f"{source} is empty: it has no stories")
    if kind == "text":
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
            dataset = datasets.Dataset.from_generator(
                stories_in_txt, gen_kwargs={"paths": [str(f) for f in files], "stamps": stamps},
                features=datasets.Features({"text": datasets.Value("string")}))
        except ValueError:  # `datasets` refuses a generator that yields nothing
            raise UserError(f"{source} has no stories in it") from None
        except datasets.exceptions.DatasetGenerationError as error:
            if isinstance(error.__cause__, OSError):  # from stories_in_txt: names the file
                raise UserError(str(error.__cause__)) from None
            raise
    else:
        try:
            dataset = datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
        except Exception as error:  # pyarrow and `datasets` raise their own types for a corrupt file
            cause = error.__cause__ or error
            raise UserError(f"cannot read {source} as {kind}: {_first_line(cause)}") from None
        if "text" not in dataset.column_names:
            raise UserError(f"{source} has no 'text' column (columns: {', '.join(dataset.column_names)})")
        kind_of_text = getattr(dataset.features["text"], "dtype", "a nested structure")
        if kind_of_text not in ("string", "large_string"):
            raise UserError(f"{source}: its 'text' column holds {kind_of_text}, not strings")
        dataset = dataset.select_columns(["text"]).filter(lambda text: text is not None, input_columns="text")
    if len(dataset) == 0:
        raise UserError(f"{source} has no stories in it")
    return dataset


# ---------------------------------------------------------------- text

def split_words(tokenizer, text):
    """The tokens of `text` as the tokenizer cuts them (words with their SPACE_MARK), and their ids
    ([UNK] where unknown).

    Showing these words (through `detokenize`'s `words_before`), rather than decoding the ids, keeps
    a prompt's unknown words visible.
    """
    backend = tokenizer.backend_tokenizer
    words = [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]
    return words, tokenizer.convert_tokens_to_ids(words)


def detokenize(tokenizer, ids, words_before=()):
    """Token ids to readable text, special tokens dropped: what `tokenizer.decode(ids,
    skip_special_tokens=True)` gives (the decoder saved in tokenizer.json, which every Hugging Face
    tool uses too), less the space before the first word.

    `words_before` (e.g. a prompt's words from `split_words`) are decoded in front as they are, so
    a prompt word the vocabulary lacks reads as itself, not as [UNK].
    """
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens([int(i) for i in ids if int(i) not in special])
    return tokenizer.convert_tokens_to_string([*words_before, *tokens]).lstrip()


def unknown_words(tokenizer, text):
    """The words of `text` that the vocabulary lacks (the model reads each as [UNK])."""
    words, ids = split_words(tokenizer, text)
    return [tokenizer.convert_tokens_to_string([word]).strip()
            for word, token_id in zip(words, ids) if token_id == tokenizer.unk_token_id]


def warn_unknown_words(tokenizer, text):
    """Say on stderr which words of a prompt the model cannot read."""
    missing = unknown_words(tokenizer, text)
    if missing:
        print(f"warning: not in the vocabulary, so the model reads them as {UNK}: {', '.join(missing)}",
              file=sys.stderr)


# ---------------------------------------------------------------- devices and saved folders

def pick_device():
    import torch
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _first_line(error):
    if isinstance(error, KeyError):  # its message is only the key
        return f"no {error} in it"
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _check_json_files(folder, names, remedy):
    """A UserError naming the first of these JSON files in `folder` that does not parse."""
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            try:
                json.loads(path.read_bytes())
            except (ValueError, OSError) as error:
                raise UserError(f"{path} is corrupt ({_first_line(error)}): {remedy}") from None


def vocabulary_fingerprint(vocabulary):
    """A short hash of {token: id}: two tokenizers with equal fingerprints map every word alike."""
    text = json.dumps(sorted(vocabulary.items()), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def tokenizer_fingerprint(folder):
    """The vocabulary fingerprint of the tokenizer.json in `folder` (no transformers needed)."""
    from tokenizers import Tokenizer
    path = Path(folder) / "tokenizer.json"
    try:
        return vocabulary_fingerprint(Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True))
    except Exception as error:  # the Rust library raises a plain Exception for a corrupt file
        raise UserError(f"{path} is not a readable tokenizer ({_first_line(error)})") from None


def read_run_record(folder):
    """train_model.py's record of the run that made the model or checkpoint in `folder`, or None."""
    path = Path(folder) / RUN_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as error:
        raise UserError(f"{path} is corrupt ({_first_line(error)}): delete it") from None
    return record if isinstance(record, dict) else None


def peak_memory(device):
    """(bytes, what they measure): the most this process has held, on the GPU for "cuda" (tensors,
    as the caching allocator counts them), else in main memory (peak resident set, every allocation)."""
    if device == "cuda":
        import torch
        return torch.cuda.max_memory_allocated(), "GPU memory allocated"
    try:
        import resource
    except ImportError:  # Windows
        return None, "resident memory"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024), "resident memory"  # bytes on macOS, KiB on Linux


def load_tokenizer(folder):
    from transformers import AutoTokenizer
    if not (Path(folder) / "tokenizer.json").is_file():
        raise UserError(f"no tokenizer in {folder}: run train_tokenizer.py first (or set TOKENIZER_DIR)")
    remedy = "run train_tokenizer.py again" if not (Path(folder) / "config.json").is_file() else \
        "copy the tokenizer the model was trained with back, or train the model again"
    _check_json_files(folder, ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"], remedy)
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as error:  # the Rust library raises a plain Exception for a corrupt file
        raise UserError(f"cannot load the tokenizer in {folder} ({_first_line(error)}): {remedy}") from None


def _check_weights(path):
    """A UserError naming a truncated or foreign safetensors file (its header states every tensor's extent)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except Exception as error:  # safetensors raises its own SafetensorError, no subclass of OSError
        raise UserError(f"{path} is corrupt or truncated ({_first_line(error)}): train the model again") from None


def load_model(folder, device=None):
    """The model and tokenizer that train_model.py saved in `folder`, ready for generation."""
    from transformers import AutoModelForCausalLM
    folder = Path(folder)
    weights = list(folder.glob("model*.safetensors")) + list(folder.glob("pytorch_model*.bin"))
    if not (folder / "config.json").is_file() or not weights or not (folder / "tokenizer.json").is_file():
        what = "no model" if not folder.exists() else "no complete model (config, weights and tokenizer)"
        raise UserError(f"{what} in {folder}: run train_model.py first (or set MODEL_DIR)")
    from transformers.utils import logging
    _check_json_files(folder, ["config.json", "generation_config.json"], "train the model again")
    for path in weights:
        if path.suffix == ".safetensors":
            _check_weights(path)
    tokenizer = load_tokenizer(folder)
    record = read_run_record(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if not isinstance(config, dict) or "vocab_size" not in config:
        raise UserError(f"{folder / 'config.json'} is not a model's config: train the model again")
    matches = (record["tokenizer"] == vocabulary_fingerprint(tokenizer.get_vocab())
               if record and "tokenizer" in record else config.get("vocab_size") == len(tokenizer))
    if not matches:  # e.g. train_tokenizer.py wrote into MODEL_DIR: the ids would mean other words
        raise UserError(f"{folder / 'tokenizer.json'} is not the tokenizer this model was trained with: "
                        f"copy that one back, or train the model again")
    logging.disable_progress_bar()  # a bar for loading a few MB of weights is noise
    try:
        model = AutoModelForCausalLM.from_pretrained(folder)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise UserError(f"cannot load the model in {folder} ({_first_line(error)}): train it again") from None
    finally:
        logging.enable_progress_bar()
    model.config.use_cache = True  # the Trainer saves checkpoints with the KV cache switched off
    model.to(device or pick_device()).eval()
    return model, tokenizer


def token_nll(model, ids, context_length=None):
    """Negative log-likelihood (nats) of each token of `ids` after the first, under `model` alone.

    Texts longer than the model's context are scored in overlapping windows, so every token is
    predicted from at least half a context of what precedes it.
    """
    import torch
    context_length = context_length or model.config.n_positions
    ids = torch.as_tensor(ids, dtype=torch.long, device=model.device)
    losses = torch.empty(len(ids) - 1, device=model.device)
    stride = max(1, context_length // 2)
    scored = 1  # tokens [0, scored) have their loss (the first token has none)
    with torch.no_grad():
        while scored < len(ids):
            # at least half a context before the first new token; a full window where the text allows
            start = max(0, min(scored - (context_length - stride), len(ids) - context_length))
            end = min(len(ids), start + context_length)
            logits = model(ids[start:end].unsqueeze(0)).logits[0].float()
            nll = torch.nn.functional.cross_entropy(logits[:-1], ids[start + 1:end], reduction="none")
            losses[scored - 1:end - 1] = nll[scored - 1 - start:]
            scored = end
    return losses.cpu()
