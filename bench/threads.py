"""CPU threads, quiet and busy: the scripts as a user runs them, with 1 thread, 2 threads and the policy.

    python -m bench.threads --model_dir=model --tokenizer_dir=tokenizer   # ~15 minutes on 2 CPU cores
    python -m bench.threads --repeats=1 --num_digits=200 --train_steps=10 --record=false   # a quick look

For each job (training TRAIN_STEPS steps of the quick start's model on the bundled sample,
`generate.py` with its defaults, `pilish_generate.py` for NUM_DIGITS digits) and each thread choice
(OMP_NUM_THREADS=1, OMP_NUM_THREADS=2, and none: the scripts' automatic policy), it runs the script
in a subprocess on a quiet machine and again beside NEIGHBOURS busy processes (`yes > /dev/null`, a
fair stand-in for a browser and an IDE), interleaved so drift hits every row alike. It reports the
median wall time (training: tokens/s, from metrics.json) and the busy/quiet ratio: 1.5 is a fair
share of 2 cores among 3 busy processes; far above that is threads waiting for each other.
Appends the table to BENCHMARKS.md.
"""

MODEL_DIR = "model"  # a trained model for generate.py and pilish_generate.py (the quick start's)
TOKENIZER_DIR = "tokenizer"  # the tokenizer the training job uses
TRAIN_STEPS = 30  # training steps per training run (batch 16, as in the quick start)
NUM_DIGITS = 1000  # digits of pi per pilish_generate.py run
NEIGHBOURS = 2  # busy processes beside the busy runs
REPEATS = 3  # runs per cell; the table quotes medians
RECORD = True  # append the results to BENCHMARKS.md

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.support import ROOT, median, report
from lmkit.settings import UserError, at_least, run_script

CHOICES = {"1 thread": "1", "2 threads": "2", "policy": None}  # OMP_NUM_THREADS; None = unset


def environment(threads):
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    return env


def run_job(command, threads, metrics=None):
    """(wall seconds, tokens/s from `metrics` if given) of one run of `command` from the repo root."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=environment(threads), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise UserError(f"{' '.join(command[1:3])} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    speed = json.loads(Path(metrics, "metrics.json").read_text())["tokens_per_second"] if metrics else None
    return seconds, speed


def jobs(config, scratch):
    """{job: (command, metrics folder or None)}."""
    python = sys.executable
    model = str(Path(scratch, "model"))
    return {
        "train": ([python, "train_model.py", "--dataset=sample", f"--tokenizer_dir={config.TOKENIZER_DIR}",
                   f"--model_dir={model}", "--batch_size=16", f"--max_steps={config.TRAIN_STEPS}",
                   "--ngram_stories=0", "--overwrite=true"], model),
        "generate": ([python, "generate.py", f"--model_dir={config.MODEL_DIR}"], None),
        "pilish": ([python, "pilish_generate.py", f"--model_dir={config.MODEL_DIR}",
                    f"--num_digits={config.NUM_DIGITS}"], None),
    }


def measure(config, scratch):
    """{(job, choice, load): [(seconds, tokens/s), ...]}, the runs interleaved."""
    results = {}
    for repeat in range(config.REPEATS):
        for load in ("quiet", "busy"):
            neighbours = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(config.NEIGHBOURS)
                          ] if load == "busy" else []
            try:
                for job, (command, metrics) in jobs(config, scratch).items():
                    for choice, threads in CHOICES.items():
                        if metrics:
                            subprocess.run(["rm", "-rf", metrics])  # every training run starts afresh
                        results.setdefault((job, choice, load), []).append(run_job(command, threads, metrics))
                        print(f"  {repeat + 1}/{config.REPEATS} {load:5} {job:8} {choice:9} "
                              f"{results[job, choice, load][-1][0]:.1f} s", flush=True)
            finally:
                for process in neighbours:
                    process.kill()
    return results


def rows_of(results):
    rows = []
    for job in ("train", "generate", "pilish"):
        for choice in CHOICES:
            quiet, busy = results[job, choice, "quiet"], results[job, choice, "busy"]
            seconds = [median([s for s, _ in runs]) for runs in (quiet, busy)]
            if job == "train":
                speeds = [median([v for _, v in runs]) for runs in (quiet, busy)]
                cells = [f"{speeds[0]:,.0f} tokens/s", f"{speeds[1]:,.0f} tokens/s", f"{speeds[0] / speeds[1]:.2f}x"]
            else:
                cells = [f"{seconds[0]:.1f} s", f"{seconds[1]:.1f} s", f"{seconds[1] / seconds[0]:.2f}x"]
            rows.append([job, choice, *cells])
    return rows


def main(config):
    at_least(config, 1, "REPEATS", "TRAIN_STEPS", "NUM_DIGITS")
    at_least(config, 0, "NEIGHBOURS")
    for name in ("MODEL_DIR", "TOKENIZER_DIR"):
        if not Path(getattr(config, name), "tokenizer.json").is_file():
            raise UserError(f"no tokenizer in {getattr(config, name)}: set {name} to a trained one")
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as scratch:
        results = measure(config, scratch)
    notes = [f"jobs: train_model.py {config.TRAIN_STEPS} steps of batch 16 on the sample (tokens/s from its "
             f"metrics.json); generate.py with its defaults; pilish_generate.py --num_digits={config.NUM_DIGITS} "
             f"(wall s, model loading included); medians of {config.REPEATS}",
             f"busy: beside {config.NEIGHBOURS} `yes > /dev/null`; slowdown = busy time / quiet time "
             f"(1.5 is a fair share of 2 cores among 3 busy processes)",
             "policy: no OMP_NUM_THREADS, so each script chooses (lmkit.folders.cpu_threads)"]
    report(__file__, ["job", "threads", "quiet", "busy", "slowdown"], rows_of(results), notes, config.RECORD)


if __name__ == "__main__":
    run_script(main, globals())
