"""Mutation score of the test suite on a random sample of generated mutants (mutmut 3).

    pip install -r requirements-mutation.txt
    python -m tests.mutation.sample --count 200 --seed 1                       # every module (~30 min)
    python -m tests.mutation.sample --modules lmkit/training.py,lmkit/lm_loss.py --count 60 --seed 1
    python -m tests.mutation.sample --per-module 12 --seed 1                   # the same number from each module
    python -m tests.mutation.sample --per-module 10 --seed 1 --survivors      # again, only what survived
    python -m tests.mutation.sample --list                                     # how many mutants each module has

mutmut writes every mutant of the modules named in pyproject.toml's [tool.mutmut] (lmkit/, pilish/ and
the four scripts) into one copy of the repository, each behind a switch, and runs for a mutant only the
tests that reached the mutated function (it records which, in one traced run of the suite). This command
works in .mutation/ (ignored by git; the working tree is never touched): it syncs the repository there,
has mutmut generate the mutants, draws a sample with the seed, runs `mutmut run NAME...` on it with
--jobs workers, prints every survivor as a diff (`mutmut show`) and a caught/total table by module.

A mutant is caught when its tests fail or time out. Survivors listed in tests/mutation/equivalent.txt
(mutants that change no behaviour, each with a reason) are left out of the score. "no tests" (no test
reached the function) counts as a survivor. The traced run (~5 min) is redone only when tests change.

Not a test module (no test_ prefix): pytest never collects it. Its score goes in the README's Testing section.
"""

import argparse
import collections
import filecmp
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT_FILE = ROOT / "tests" / "mutation" / "equivalent.txt"
CAUGHT = {"killed", "timeout", "segfault"}
# mutmut's exit-code meanings (mutmut.stats.status_by_exit_code, restated so this file imports no mutmut
# before it has changed into the work folder)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          35: "suspicious", 36: "timeout", 37: "type check", -24: "timeout", 24: "timeout", 152: "timeout",
          255: "timeout", -11: "segfault", -9: "segfault", 2: "interrupted", None: "not checked"}


def repository_files(source):
    """The files of `source` that git would commit (tracked and untracked-but-not-ignored); every file
    when `source` is not a git checkout (e.g. an export of one revision)."""
    if not (source / ".git").exists():
        return sorted(str(path.relative_to(source)) for path in source.rglob("*")
                      if path.is_file() and "__pycache__" not in path.parts)
    listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=source, check=True,
                             capture_output=True).stdout.decode()
    return [name for name in listing.split("\0") if name and (source / name).is_file()]


def sync(source, work):
    """Make `work` a copy of `source`, rewriting only the files that changed: mutmut regenerates the
    mutants of a module only when the module is newer than them, so a changed file gets a new mtime
    and an unchanged one keeps its old. Files gone from `source` go from `work` too."""
    work.mkdir(parents=True, exist_ok=True)
    names = repository_files(source)
    for name in names:
        target = work / name
        if target.is_file() and filecmp.cmp(source / name, target, shallow=False):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)
    keep = set(names)
    for path in work.rglob("*"):
        relative = path.relative_to(work)
        if path.is_file() and relative.parts[0] != "mutants" and str(relative) not in keep:
            path.unlink()
            mutated = work / "mutants" / relative
            for stale in (mutated, mutated.with_name(mutated.name + ".meta"), mutated.with_name(mutated.name + ".spans")):
                stale.unlink(missing_ok=True)
    # mutmut copies tests/ (and also_copy) into mutants/ on top of what is there: start them afresh
    shutil.rmtree(work / "mutants" / "tests", ignore_errors=True)


def generate(work):
    """Have mutmut write the mutants under work/mutants; return {mutant name: source path}."""
    code = ("import mutmut.__main__ as m\n"
            "from mutmut.utils.file_utils import copy_src_dir, copy_also_copy_files, setup_source_paths\n"
            "copy_src_dir(); copy_also_copy_files(); setup_source_paths(); m.create_mutants(1)\n")
    subprocess.run([sys.executable, "-c", code], cwd=work, check=True, stdout=subprocess.DEVNULL)
    names = {}
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        source = str(meta.relative_to(work / "mutants"))[:-len(".meta")]
        for name in json.loads(meta.read_text())["exit_code_by_key"]:
            names[name] = source
    return names


def results(work, names):
    """{mutant name: status} from mutmut's result files."""
    codes = {}
    for meta in (work / "mutants").rglob("*.py.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return {name: STATUS.get(codes.get(name), "suspicious") for name in names}


def function_of(name):
    """lmkit.data.x_load__mutmut_12 -> lmkit.data.x_load: a mutant's name without its number."""
    return name.partition("__mutmut_")[0]


def changed_line(diff):
    """The first line a mutant adds, stripped: with the function's name, a key that survives renumbering."""
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return added[0] if added else ""


def read_equivalents(path=EQUIVALENT_FILE):
    """{(function, changed line): reason}. Each line: `NAME: `CHANGED LINE` -- reason`."""
    equivalents = {}
    pattern = re.compile(r"^(\S+?): `(.*)` -- (.+)$")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if path.exists() else ():
        if not line.strip() or line.startswith("#"):
            continue
        match = pattern.match(line)
        if not match:
            raise SystemExit(f"{path}:{number}: expected `NAME: `CHANGED LINE` -- reason`, got {line!r}")
        equivalents[(function_of(match[1]), match[2].strip())] = match[3]
    return equivalents


def diffs(work, names):
    """{mutant name: unified diff of the mutant against the original}, as `mutmut show` prints it."""
    code = ("import json, sys\nfrom mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant\n"
            "names = json.load(sys.stdin)\n"
            "print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in names}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, check=True, input=json.dumps(sorted(names)),
                         capture_output=True, text=True).stdout
    return json.loads(out)


def draw(names, modules, count, per_module, seed):
    """A seeded random sample of the mutants of `modules` (all when empty): `count` in all, or `per_module`
    from each module (all of a module's mutants when it has fewer)."""
    by_module = collections.defaultdict(list)
    for name, source in sorted(names.items()):
        if not modules or source in modules:
            by_module[source].append(name)
    unknown = set(modules) - set(by_module)
    if unknown:
        raise SystemExit(f"no mutants in {', '.join(sorted(unknown))} (not in [tool.mutmut] source_paths?)")
    rng = random.Random(seed)
    if per_module:
        return sorted(name for source in sorted(by_module)
                      for name in rng.sample(by_module[source], min(per_module, len(by_module[source]))))
    pool = [name for source in sorted(by_module) for name in by_module[source]]
    return sorted(rng.sample(pool, min(count, len(pool))))


def table(sample, names, status, equivalent):
    """Rows of module, mutants, caught, survived, equivalent, score; and the total row."""
    rows = collections.OrderedDict()
    for name in sample:
        row = rows.setdefault(names[name], collections.Counter())
        row["mutants"] += 1
        if status[name] in CAUGHT:
            row["caught"] += 1
        elif name in equivalent:
            row["equivalent"] += 1
        else:
            row["survived"] += 1
    total = sum(rows.values(), collections.Counter())
    lines = ["| module | mutants | caught | survived | equivalent | score |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for module, row in [*sorted(rows.items()), ("**all**", total)]:
        scored = row["mutants"] - row["equivalent"]
        score = f"{100 * row['caught'] / scored:.0f}%" if scored else "-"
        lines.append(f"| {module} | {row['mutants']} | {row['caught']} | {row['survived']} | {row['equivalent']} "
                     f"| {score} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", default="", help="comma-separated source files (default: all of "
                        "[tool.mutmut] source_paths), e.g. lmkit/training.py,pilish/fluency.py")
    parser.add_argument("--count", type=int, default=200, help="mutants to draw in all (default 200)")
    parser.add_argument("--per-module", type=int, default=0, help="draw this many from each module instead")
    parser.add_argument("--seed", type=int, default=1, help="the sample's random seed (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2: the machine has 2 cores)")
    parser.add_argument("--work", type=Path, default=ROOT / ".mutation", help="work folder (default .mutation/)")
    parser.add_argument("--source", type=Path, default=ROOT, help="the tree to mutate (default: this working "
                        "tree; e.g. a `git archive` export of a revision)")
    parser.add_argument("--list", action="store_true", help="print how many mutants each module has, run none")
    parser.add_argument("--no-run", action="store_true", help="report the results of the last run of this sample")
    parser.add_argument("--survivors", action="store_true", help="run only the mutants of the sample that the "
                        "last run did not catch (after adding tests), then report the whole sample")
    args = parser.parse_args(argv)
    started = time.time()

    work = args.work.resolve()
    sync(args.source.resolve(), work)
    names = generate(work)
    if args.list:
        for source, n in sorted(collections.Counter(names.values()).items()):
            print(f"{n:5d}  {source}")
        print(f"{len(names):5d}  in all")
        return 0
    modules = [module.strip() for module in args.modules.split(",") if module.strip()]
    sample = draw(names, modules, args.count, args.per_module, args.seed)
    print(f"{len(sample)} mutants drawn (seed {args.seed}) from {len(names)} generated", flush=True)

    to_run = [name for name, status in results(work, sample).items() if status not in CAUGHT] if args.survivors \
        else sample
    if not args.no_run and to_run:
        print(f"running {len(to_run)} of them", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        subprocess.run(["mutmut", "run", f"--max-children={args.jobs}", *to_run], cwd=work, env=env,
                       stdout=subprocess.DEVNULL if not os.environ.get("MUTATION_VERBOSE") else None)

    status = results(work, sample)
    not_caught = [name for name in sample if status[name] not in CAUGHT]
    shown = diffs(work, not_caught) if not_caught else {}
    known = read_equivalents()
    equivalent = {name: known[(function_of(name), changed_line(shown[name]))] for name in not_caught
                  if (function_of(name), changed_line(shown[name])) in known}
    for name in not_caught:
        label = f"equivalent: {equivalent[name]}" if name in equivalent else status[name]
        print(f"\n# {name}: {label}\n{shown[name]}")
    odd = sorted(name for name in sample if status[name] not in CAUGHT | {"survived", "no tests"})
    if odd:
        print(f"\nnot run to a verdict ({len(odd)}): " + ", ".join(f"{n} ({status[n]})" for n in odd))
    print("\n" + table(sample, names, status, equivalent))
    print(f"\nmutmut {mutmut_version()}, {len(sample)} mutants, seed {args.seed}, "
          f"{(time.time() - started) / 60:.1f} min")
    return 0


def mutmut_version():
    from importlib.metadata import version
    return version("mutmut")


if __name__ == "__main__":
    sys.exit(main())
