"""Saved folders and devices: loading what train_tokenizer.py and train_model.py saved, the run
record beside each model, the tokenizer's fingerprint, and which device to run on.
"""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from lmkit.files import write_text
from lmkit.settings import UserError, drop_warnings, first_line

RUN_RECORD = "training_run.json"  # train_model.py's settings and tokenizer fingerprint, beside each model
# What the user sets to choose torch's CPU threads; any of them set means the policy below stands aside.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
WAIT_POLICY = "OMP_WAIT_POLICY"  # how OpenMP's threads wait for each other; read once, as torch loads
# The scheduler turn asked for threads that sleep while they wait (Linux 6.12 and later; 0.1-100 ms):
# beside busy programs, a woken thread then runs within this time, not after another program's full turn.
SHORT_TURN_NS = 300_000
SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}  # the system call's number (Python has no wrapper)
SCHED_OTHER = 0  # Linux's default scheduling policy


def pick_device():
    import torch
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class IdleCores:
    """How many cores other programs leave idle, measured over the time since the last look: the
    whole machine's CPU use less this process's own (psutil, which accelerate already needs)."""

    def __init__(self):
        import psutil
        self.process, self.psutil = psutil.Process(), psutil
        self.cores = usable_cores()
        self.look()

    def look(self) -> float:
        machine = self.psutil.cpu_percent(None) / 100 * (self.psutil.cpu_count() or 1)  # busy cores, all programs
        own = self.process.cpu_percent(None) / 100
        return max(0.0, min(self.cores, self.cores - (machine - own)))


def threads_for(idle_cores: float) -> int:
    """One thread per core left idle by other programs, at least one: on a quiet 2-core machine two
    (training runs 1.5x faster than on one), beside other busy programs one. A model this small splits
    its matrix products so finely that a thread waiting for a core another program holds stalls the
    others at every step: with two threads beside two busy programs, Pilish ran 5.8x slower than quiet."""
    return max(1, int(idle_cores + 0.3))


def training_threads(idle_cores: float, cores: int) -> tuple[int, bool]:
    """(threads, whether they sleep while they wait) for training. Where other programs leave no core
    idle, one thread per core that sleeps while it waits (OMP_WAIT_POLICY=PASSIVE): the scheduler gives
    every busy thread its turn, so two threads get twice the share of one, and a thread that waits
    sleeps instead of spinning through the turn of the one it waits for. Beside two busy programs on 2
    cores that trained 1.2-1.4x faster than one thread (BENCHMARKS.md, 2026-12-05); beside one busy
    program one thread was as fast, and on a quiet machine spinning threads are faster, so otherwise
    `threads_for`, spinning (OpenMP's default)."""
    if cores >= 2 and idle_cores < 0.5:
        return cores, True
    return threads_for(idle_cores), False


def cpu_threads(setting, environ=os.environ, idle_cores=None, *, training=False, cores=None):
    """(torch threads for the CPU, or None to leave torch's own choice; why, for the log).

    `setting` > 0 is the user's THREADS; OMP_NUM_THREADS or MKL_NUM_THREADS set means the user chose
    through the environment, which torch already follows. Otherwise `threads_for` the cores idle now
    (measured for a third of a second unless `idle_cores` is given). With `training`, called before torch
    is imported, `training_threads`: when it chooses threads that sleep, this sets OMP_WAIT_POLICY=PASSIVE
    in `environ` for OpenMP to read as torch loads (unless the user set OMP_WAIT_POLICY; once torch is
    loaded it is too late, and `threads_for` stands).
    """
    if setting > 0:
        return setting, f"THREADS={setting}"
    chosen = [name for name in THREAD_VARIABLES if environ.get(name, "").strip()]
    if chosen:
        return None, f"{chosen[0]}={environ[chosen[0]].strip()}"
    if idle_cores is None:
        monitor = IdleCores()
        time.sleep(0.3)
        idle_cores = monitor.look()
    why = f"automatic: {idle_cores:.1f} cores idle"
    if training and not environ.get(WAIT_POLICY, "").strip() and "torch" not in sys.modules:
        threads, passive = training_threads(idle_cores, cores or usable_cores())
        if passive:
            environ[WAIT_POLICY] = "PASSIVE"
            turns = ", in short turns" if ask_short_turns() else ""
            return threads, f"{why}, so threads that sleep while they wait{turns} (THREADS=N to choose)"
    return threads_for(idle_cores), f"{why} (THREADS=N to choose)"


def ask_short_turns(nanoseconds=SHORT_TURN_NS, syscall=None) -> bool:
    """Ask Linux for turns of `nanoseconds` on the CPU for this thread and the threads it starts later
    (torch's), where their scheduler (EEVDF, Linux 6.12 and later) lets a task choose its turn; whether
    it was asked. A thread that sleeps while it waits for another is woken when that one is done, but
    beside busy programs it then waits for a core; with short turns the scheduler lets it run sooner,
    without more CPU time in all. Beside two busy programs on 2 cores, training with two sleeping
    threads ran ~25% faster (BENCHMARKS.md). Elsewhere, or for a thread under another policy (SCHED_BATCH,
    a real-time one: the user's choice), nothing is asked; older kernels take the request and ignore it."""
    import platform
    number = SCHED_SETATTR.get(platform.machine())
    if number is None or not sys.platform.startswith("linux") or os.sched_getscheduler(0) != SCHED_OTHER:
        return False
    if syscall is None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = lambda *args: libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    import struct
    # struct sched_attr (version 0): size, policy, flags, nice, priority, runtime, deadline, period. The
    # nice value is this thread's own: a lower one would need privileges, and the call sets it too.
    attr = struct.pack("IIQiIQQQ", 48, SCHED_OTHER, 0, os.getpriority(os.PRIO_PROCESS, 0), 0, nanoseconds, 0, 0)
    return syscall(number, 0, attr, 0) == 0


def use_cpu_threads(setting, device, chosen=None):
    """Apply `cpu_threads` (or what it `chosen` already) to torch when the work runs on the CPU; the
    log line that says so, or ""."""
    if device != "cpu":
        return ""
    import torch
    threads, why = chosen or cpu_threads(setting)
    if threads is not None:
        torch.set_num_threads(threads)
    return f"CPU threads: {torch.get_num_threads()} ({why})"


def _check_json_files(folder, names, remedy):
    """A UserError naming the first of these JSON files in `folder` that does not parse."""
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            try:
                json.loads(path.read_bytes())
            except (ValueError, OSError) as error:
                raise UserError(f"{path} is corrupt ({first_line(error)}): {remedy}") from None


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
        raise UserError(f"{path} is not a readable tokenizer ({first_line(error)})") from None


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


# The files train_tokenizer.py and train_model.py save (and the Trainer's): no script writes text over them.
SAVED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json",
               "generation_config.json", "model.safetensors", "pytorch_model.bin", "training_args.bin", RUN_RECORD,
               "metrics.json", "ngrams.pt", "README.md", "loss_curve.png")


def check_not_a_saved_file(path, what):
    """A UserError when `path` is a file of a model or tokenizer folder (one that holds tokenizer.json
    or config.json): a text written there would replace part of a model."""
    path = Path(path).expanduser().resolve()
    folder = path.parent
    saved_folder = (folder / "tokenizer.json").is_file() or (folder / "config.json").is_file()
    if saved_folder and (path.exists() or path.name in SAVED_FILES or path.suffix in (".safetensors", ".bin", ".pt")):
        raise UserError(f"{what}={path} would replace a file of the model or tokenizer in {folder}: "
                        f"write the text somewhere else")


def read_run_record(folder):
    """train_model.py's record of the run that made the model or checkpoint in `folder`, or None."""
    path = Path(folder) / RUN_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as error:
        raise UserError(f"{path} is corrupt ({first_line(error)}): delete it") from None
    return record if isinstance(record, dict) else None


def write_run_record(folder, record):
    write_text(Path(folder, RUN_RECORD), json.dumps(record, indent=1))


def run_record(settings, fingerprint):
    """What train_model.py writes beside each checkpoint and model (RUN_RECORD): its settings and
    the fingerprint of the tokenizer's vocabulary."""
    return {"tokenizer": fingerprint, "settings": dict(settings)}


def load_tokenizer(folder):
    from transformers import AutoTokenizer
    if not (Path(folder) / "tokenizer.json").is_file():
        raise UserError(f"no tokenizer in {folder}: run train_tokenizer.py first (or set TOKENIZER_DIR)")
    remedy = "run train_tokenizer.py again" if not (Path(folder) / "config.json").is_file() else \
        "copy the tokenizer the model was trained with back, or train the model again"
    if not (Path(folder) / "tokenizer_config.json").is_file():  # the library would load one with no special tokens
        raise UserError(f"{folder} has tokenizer.json but no tokenizer_config.json: {remedy}")
    _check_json_files(folder, ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"], remedy)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as error:  # the Rust library raises a plain Exception for a corrupt file
        raise UserError(f"cannot load the tokenizer in {folder} ({first_line(error)}): {remedy}") from None
    if tokenizer.eos_token is None or tokenizer.pad_token is None:
        raise UserError(f"{folder}/tokenizer_config.json names no end-of-story or padding token: {remedy}")
    return tokenizer


def _check_weights(path):
    """A UserError naming a truncated or foreign safetensors file (its header states every tensor's extent)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except Exception as error:  # safetensors raises its own SafetensorError, no subclass of OSError
        raise UserError(f"{path} is corrupt or truncated ({first_line(error)}): train the model again") from None


def weights_are_finite(model):
    import torch
    return all(bool(torch.isfinite(parameter).all()) for parameter in model.parameters())


def check_weights_fit(model, report, config_file, weights_file):
    """A UserError when the weights do not fill the model that config.json describes (a layer missing
    or left over, a shape that differs: the library would fill the gap with random numbers) or hold
    a NaN or infinity (the model would still write, and score every text as nan)."""
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(key[0] if isinstance(key, tuple) else str(key) for key in report.get(kind, ()))
        if keys:
            what = {"missing_keys": "has no weights for", "unexpected_keys": "has weights that no layer takes:",
                    "mismatched_keys": "has weights of another shape for"}[kind]
            raise UserError(f"{config_file} does not describe {weights_file.name}: it {what} {keys[0]}"
                            f"{f' and {len(keys) - 1} more' if len(keys) > 1 else ''}. Copy back the config.json "
                            f"saved with these weights, or train the model again")
    if not weights_are_finite(model):
        raise UserError(f"{weights_file} holds NaN or infinite weights: train the model again "
                        f"(with a lower LEARNING_RATE)")
    if not any(bool(parameter.any()) for parameter in model.parameters()):  # zeroed: it would write random words
        raise UserError(f"{weights_file} holds only zeros, no trained weights: train the model again "
                        f"(or copy back the file it saved)")


def load_model(folder, device=None):
    """The model and tokenizer that train_model.py saved in `folder`, ready for generation."""
    from transformers import AutoModelForCausalLM
    folder = Path(folder)
    # generate() leaves the attention mask out once it is all ones; a finished row's pad tokens then
    # look like unmasked padding to this check (we always pass the mask)
    drop_warnings("transformers.modeling_utils", "We strongly recommend passing in an `attention_mask`")
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
    if config.get("model_type") != "gpt2":  # another type builds another model, of its own default size
        raise UserError(f"{folder / 'config.json'} describes a {config.get('model_type')!r} model, and "
                        f"train_model.py saves GPT-2 ('gpt2'): copy back the config.json saved with the weights")
    matches = (record["tokenizer"] == vocabulary_fingerprint(tokenizer.get_vocab())
               if record and "tokenizer" in record else config.get("vocab_size") == len(tokenizer))
    if not matches:  # e.g. train_tokenizer.py wrote into MODEL_DIR: the ids would mean other words
        raise UserError(f"{folder / 'tokenizer.json'} is not the tokenizer this model was trained with: "
                        f"copy that one back, or train the model again")
    logging.disable_progress_bar()  # a bar for loading a few MB of weights is noise
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the library's load report: its findings become one line below
    try:
        model, report = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True,
                                                             ignore_mismatched_sizes=True)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise UserError(f"cannot load the model in {folder} ({first_line(error)}): train it again") from None
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()
    check_weights_fit(model, report, folder / "config.json", weights[0])
    model.config.use_cache = True  # the Trainer saves checkpoints with the KV cache switched off
    model.to(device or pick_device()).eval()
    return model, tokenizer
