"""Pieces shared by the four scripts: constants and overrides, data loading,
detokenizing, devices and loading what an earlier script saved.

Each script keeps its settings as UPPERCASE constants at the top and ends with
`run_script(main, globals())`, which reads `--name=value` overrides, checks
their types and turns every `UserError` into one line on stderr.
"""

import gzip
import json
import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

EOT = "<|endoftext|>"  # separates stories, in the data set's txt files and in the token stream
UNK = "[UNK]"
PAD = "[PAD]"
SPECIAL_TOKENS = [PAD, UNK, EOT]

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

def _constants(namespace):
    """The settings of a script: the UPPERCASE assignments of its opening block, before the first import."""
    import ast
    names = []
    for statement in ast.parse(Path(namespace["__file__"]).read_text(encoding="utf-8")).body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            break
        if isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names += [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
    return {name: namespace[name] for name in names}


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
            return kind(text)
        except ValueError:
            raise UserError(f"--{name} takes a{'n integer' if kind is int else ' number'}, not {text!r}") from None
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
    print("\nSettings (--name=value):")
    for key, value in _constants(namespace).items():
        print(f"  --{key.lower()}={value!r}")


def run_script(main, namespace, argv=None):
    """Entry point of every script: parse overrides, run main, report UserErrors in one line."""
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in argv):
        print_help(namespace)
        return
    try:
        main(configure(namespace, argv))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------- data

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


def open_text(path):
    """A text file for reading, gzipped or not (bad bytes become U+FFFD rather than an error)."""
    if str(path).lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


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


def load_stories(source, split="train"):
    """A `datasets.Dataset` with a 'text' column from a hub name, a file, a folder or "sample"."""
    import datasets

    path = Path(source).expanduser()
    if source == SAMPLE and not path.exists():  # a file or folder named "sample" is the user's own
        return load_stories(str(sample_file(split)))
    looks_local = path.exists() or local_format(path) or source.startswith((".", "/", "~"))
    if not looks_local:
        if not os.environ.get("HF_HUB_OFFLINE") and not _hub_reachable():
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
        dataset = datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
        if "text" not in dataset.column_names:
            raise UserError(f"{source} has no 'text' column (columns: {', '.join(dataset.column_names)})")
        dataset = dataset.select_columns(["text"])
    if len(dataset) == 0:
        raise UserError(f"{source} has no stories in it")
    return dataset


# ---------------------------------------------------------------- text

NO_SPACE_BEFORE = set(".,!?;:)")
NO_SPACE_AFTER = set("(")


def join_tokens(tokens):
    """Word tokens back into English: punctuation attached, quotes around what they enclose."""
    text = ""
    open_quote = {'"': False, "'": False}
    glue_next = False  # the previous token was an opening quote or bracket
    for token in tokens:
        if not token:
            continue
        attach = glue_next or not text
        glue_next = False
        if token in open_quote:
            if open_quote[token]:  # a closing quote hugs the word before it
                attach = True
                open_quote[token] = False
            elif token == "'" and text and text[-1:].isalpha() and text.endswith("s") and not open_quote["'"]:
                attach = True  # a plural possessive: the dogs' ball
            else:
                open_quote[token] = True
                glue_next = True
        elif token in NO_SPACE_BEFORE or token[0] in NO_SPACE_BEFORE and len(set(token)) == 1:
            attach = True
        elif token in NO_SPACE_AFTER:
            glue_next = True
        text += token if attach else " " + token
    return text


def split_words(tokenizer, text):
    """The words (and marks) of `text` as the tokenizer sees them, and their ids ([UNK] where unknown).

    Showing these words, rather than decoding the ids, keeps a prompt's unknown words visible.
    """
    backend = tokenizer.backend_tokenizer
    words = [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]
    return words, tokenizer.convert_tokens_to_ids(words)


def detokenize(tokenizer, ids):
    """Token ids to readable text, special tokens dropped (the one decoder every script uses)."""
    special = set(tokenizer.all_special_ids)
    return join_tokens(tokenizer.convert_ids_to_tokens([int(i) for i in ids if int(i) not in special]))


# ---------------------------------------------------------------- devices and saved folders

def pick_device():
    import torch
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_tokenizer(folder):
    from transformers import AutoTokenizer
    if not (Path(folder) / "tokenizer.json").is_file():
        raise UserError(f"no tokenizer in {folder}: run train_tokenizer.py first (or set TOKENIZER_DIR)")
    return AutoTokenizer.from_pretrained(folder)


def load_model(folder, device=None):
    """The model and tokenizer that train_model.py saved in `folder`, ready for generation."""
    from transformers import AutoModelForCausalLM
    folder = Path(folder)
    weights = list(folder.glob("model*.safetensors")) + list(folder.glob("pytorch_model*.bin"))
    if not (folder / "config.json").is_file() or not weights or not (folder / "tokenizer.json").is_file():
        what = "no model" if not folder.exists() else "no complete model (config, weights and tokenizer)"
        raise UserError(f"{what} in {folder}: run train_model.py first (or set MODEL_DIR)")
    from transformers.utils import logging
    tokenizer = load_tokenizer(folder)
    logging.disable_progress_bar()  # a bar for loading a few MB of weights is noise
    model = AutoModelForCausalLM.from_pretrained(folder)
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
