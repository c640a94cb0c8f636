"""What the benchmark scripts share: where the repo and the sample data are, running the project's
own scripts, the machine header, medians, plain-text and Markdown tables, appending to
BENCHMARKS.md, the matmul peak and memory.

The benchmarks run as modules from the repo root (`python -m bench.train_speed`), so they import the
library (lmkit, pilish) just as the scripts do; a benchmark imports only the library, this module
and bench/pilish_texts.py, never another benchmark or a script (it runs a script as a user would:
`run_project_script`)."""

import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lmkit.data import sample_file
from lmkit.settings import UserError

ROOT = Path(__file__).resolve().parent.parent  # the repo root, whatever the working directory
BENCHMARKS_FILE = ROOT / "BENCHMARKS.md"


def data_file(setting, split):
    """The file a *_FILE setting names, or the bundled sample's file for `split` ('train' or 'validation')."""
    if not setting:
        return sample_file(split)
    path = Path(setting).expanduser()
    if not path.is_file():
        raise UserError(f"no data: {path} does not exist; point the setting at a TinyStories .txt or .txt.gz file")
    return path


def run_project_script(script, *arguments, quiet=False):
    """Run one of the project's scripts (e.g. "train_tokenizer.py") with `--name=value` arguments,
    as a user would: a new Python process from the repo root. `quiet` hides what it prints to
    stdout (its errors still show). A UserError when it fails."""
    command = [sys.executable, str(ROOT / script), *arguments]
    try:
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL if quiet else None)
    except subprocess.CalledProcessError as error:
        raise UserError(f"{script} failed (exit status {error.returncode}; its error is above): "
                        f"{shlex.join(['python', script, *arguments])}") from None


def median(values):
    return statistics.median(values)


def spread(values, digits=3):
    """'median (min–max)' of a few measurements."""
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


# ---------------------------------------------------------------- the machine

def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_lines():
    """Markdown bullet lines: the machine and the library versions."""
    import datasets
    import tokenizers
    import torch
    import transformers
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"- machine: {cpu_model()}, {cpu_cores()} cores, torch threads {torch.get_num_threads()}, GPU: {gpu}",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, datasets {datasets.__version__}, "
        f"tokenizers {tokenizers.__version__}",
    ]


def command_line(script_file):
    """The command that reproduces this run, from the repo root: `python -m bench.NAME ...`."""
    return "python -m " + shlex.join([f"bench.{Path(script_file).stem}", *sys.argv[1:]])


# ---------------------------------------------------------------- tables

def text_table(headers, rows):
    """Aligned plain-text columns: text left, numbers right."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_looks_numeric(row[i]) for row in cells[1:]) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric)).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(row) for row in cells[1:]])


def _looks_numeric(text):
    stripped = text.replace(",", "").replace("%", "").replace("x", "").replace("×", "").strip()
    try:
        float(stripped.split(" ")[0])
        return True
    except ValueError:
        return not stripped or stripped == "–"


def markdown_table(headers, rows):
    def line(row):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
    return "\n".join([line(headers), "|" + "|".join(" --- " for _ in headers) + "|"] + [line(r) for r in rows])


def report(script_file, headers, rows, notes=(), enabled=True):
    """Print the table and its notes, then append them to BENCHMARKS.md (unless disabled)."""
    print()
    print(text_table(headers, rows))
    for note in notes:
        print(note)
    record(script_file, headers, rows, notes, enabled)


def record(script_file, headers, rows, notes=(), enabled=True):
    """Append a section to BENCHMARKS.md: script, date, machine, versions, command, table, notes."""
    if not enabled:
        print("\n(not recorded: --record=false)")
        return
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = [f"## bench/{Path(script_file).name} — {now}", "", *machine_lines(),
               f"- command: `{command_line(script_file)}`", "", markdown_table(headers, rows), ""]
    if notes:
        section += [*(f"- {note}" for note in notes), ""]
    new_file = not BENCHMARKS_FILE.exists()
    with open(BENCHMARKS_FILE, "a", encoding="utf-8") as handle:
        if new_file:
            handle.write("# Benchmarks\n\nAppended by the scripts in bench/; newest at the bottom.\n\n")
        handle.write("\n".join(section) + "\n")
    print(f"\nappended to {BENCHMARKS_FILE.relative_to(ROOT)}")


# ---------------------------------------------------------------- hardware peak

def matmul_peak(device, dtype, size, repeats=5):
    """Dense matmul throughput (FLOP/s) of `size`-square products on `device`: the median of `repeats`."""
    import torch
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        for _ in range(2):  # warm-up: thread pools, cuBLAS handles, clocks
            a @ b
        sync()
        inner = 10 if device == "cuda" else 1  # a GPU product is too short to time alone
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(inner):
                a @ b
            sync()
            seconds.append((time.perf_counter() - started) / inner)
    return 2 * size ** 3 / median(seconds)


# ---------------------------------------------------------------- memory

def peak_memory(fn, device):
    """Bytes allocated at the peak of `fn()`, above what was allocated when it started.

    CUDA: the caching allocator's own count. CPU: the allocations and frees that
    torch.profiler(profile_memory=True) records, summed in order (the CPU allocator keeps no peak).
    """
    import torch
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        fn()
    return profiled_peak(profiler)


def profiled_peak(profiler):
    """The highest level the CPU allocations and frees recorded by a finished
    torch.profiler.profile(profile_memory=True) reach, counted from where it started."""
    import torch
    changes = sorted((event.start_ns(), event.nbytes()) for event in profiler.profiler.kineto_results.events()
                     if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU)
    level = highest = 0
    for _, change in changes:
        level += change
        highest = max(highest, level)
    return highest
