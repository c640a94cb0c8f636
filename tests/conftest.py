import os
import re
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub or datasets: keep their caches out of the user's home and
# point the hub at a closed local port, so no test can touch the network (and the offline path is
# what every hub lookup meets, on any machine).
_CACHE = tempfile.mkdtemp(prefix="pilish-tests-hf-")
os.environ["HF_HOME"] = _CACHE
os.environ["HF_DATASETS_CACHE"] = os.path.join(_CACHE, "datasets")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread, in this process and the scripts it starts: tiny models (see one_torch_thread below),
# and the scripts' automatic thread policy stands aside for it, so no test depends on the machine's load.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent  # on sys.path through pytest.ini's pythonpath, as is tests/

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

import corpus  # noqa: E402
import train_model  # noqa: E402
import train_tokenizer  # noqa: E402
from lmkit.settings import configure  # noqa: E402

# Hypothesis draws the same examples on every run (derandomize): a failure in CI is a failure on
# every rerun and on every laptop, never a one-off. HYPOTHESIS_PROFILE=explore draws fresh random
# examples (with the tests' own max_examples) to hunt for new failures locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TINY_MODEL = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--context_length=32", "--batch_size=8",
              "--learning_rate=0.01", "--warmup=0.1", "--logging_steps=5"]


def mutated_module_tests(mutant):
    """The test file that mirrors the module of a mutmut mutant name ("lmkit.training.x_f__mutmut_3" ->
    test_training.py, "pilish.prior.xǁWritingPriorǁf__mutmut_1" -> test_pilish_prior.py, "train_model.x_main..."
    -> test_train_model.py)."""
    module = re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]
    package, _, name = module.rpartition(".")
    return f"test_{'pilish_' if package == 'pilish' else ''}{name}.py"


def pytest_collection_modifyitems(config, items):
    """Under mutation testing (mutmut names the mutant in MUTANT_UNDER_TEST and runs with -x), the mutated
    module's own tests first and the benchmarks' smoke runs last: a caught mutant then costs seconds, not
    the slowest tests. A plain run keeps the usual order."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" not in mutant:
        return
    mirror = mutated_module_tests(mutant)
    rank = {mirror: 0, "test_bench.py": 2}
    items.sort(key=lambda item: rank.get(item.path.name, 1))  # stable: file order within each group


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests run tiny models: on a busy 2-core machine, handing a small matmul between threads costs far
    more than it saves (a forward pass measured 20x slower with 2 threads than with 1 there)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_main(module, argv):
    """Run a script's main() in-process with --name=value overrides, as the command line would."""
    module.main(configure(vars(module), argv))


def train(corpus_file, tokenizer_dir, model_dir, *extra):
    """train_model.py's main on the tiny model (TINY_MODEL), with more --name=value overrides in `extra`."""
    run_main(train_model, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
                           f"--model_dir={model_dir}", *TINY_MODEL, *extra])


def tiny_gpt2(vocab_size, *, n_positions, n_embd, n_layer, n_head=2, seed=0, **config):
    """A randomly initialised GPT2LMHeadModel in training mode, the same weights for the same arguments
    (torch is seeded with `seed` first). `config`: more GPT2Config fields (dropout, token ids,
    activation_function, attn_implementation...)."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                                      n_layer=n_layer, n_head=n_head, **config))


# PILISH_TEST_FIXTURES=DIR keeps the corpus, tokenizer and tiny model below in DIR and reuses them in
# later runs (tests/mutation/plant_bugs.py does, for bugs that cannot change how they are made).
FIXTURES = os.environ.get("PILISH_TEST_FIXTURES")


def fixture_folder(tmp_path_factory, name):
    if not FIXTURES:
        return tmp_path_factory.mktemp(name), False
    folder = Path(FIXTURES) / name
    ready = (folder / ".complete").is_file()
    folder.mkdir(parents=True, exist_ok=True)
    return folder, ready


# mutmut's traced run credits a function to the tests that reached it; a session fixture's work (training
# the tiny model) happens inside the first test that asks for it, so every later test that reads the
# model would look unrelated to the training code. Under that run, each fixture notes the functions it
# reached and every test that uses it is credited with them too.
TRACING = os.environ.get("MUTANT_UNDER_TEST") == "stats"
FIXTURE_HITS = {}


class traced_as:
    """Under mutmut's traced run, note the functions reached inside the block as `name`'s."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        if TRACING:  # collect the block's hits apart (a function reached before it counts for it too)
            from mutmut.state import state
            self.outside, state()._stats = state()._stats, set()

    def __exit__(self, *exc):
        if TRACING:
            from mutmut.state import state
            FIXTURE_HITS[self.name] = inside = state()._stats
            state()._stats = self.outside | inside


@pytest.fixture(autouse=True)
def credit_session_fixtures(request):
    if TRACING:
        from mutmut.state import state
        for name in request.fixturenames:
            state()._stats.update(FIXTURE_HITS.get(name, ()))
    yield


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    folder, _ = fixture_folder(tmp_path_factory, "data")
    return corpus.write_txt(folder / "stories.txt", corpus.stories(400))


@pytest.fixture(scope="session")
def tokenizer_dir(corpus_file, tmp_path_factory):
    folder, ready = fixture_folder(tmp_path_factory, "tokenizer")
    if not ready:
        with traced_as("tokenizer_dir"):
            run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={folder}", "--held_out=0.05"])
        (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def model_dir(corpus_file, tokenizer_dir, tmp_path_factory):
    """A tiny model trained for a few dozen steps: enough to have learnt the corpus' shape."""
    folder, ready = fixture_folder(tmp_path_factory, "model")
    if not ready:
        with traced_as("model_dir"):
            run_main(train_model, [f"--dataset={corpus_file}", f"--tokenizer_dir={tokenizer_dir}",
                                   f"--model_dir={folder}", "--max_steps=60", *TINY_MODEL])
        (folder / ".complete").touch()
    return folder
