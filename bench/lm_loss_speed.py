"""The output layer and its loss alone: the stock logits + cross-entropy against lm_loss's chunks.

    python -m bench.lm_loss_speed                          # about 2 minutes on 2 CPU cores
    python -m bench.lm_loss_speed --chunk_sizes=[128,256] --repeats=9
    python -m bench.lm_loss_speed --threads=1 --record=false

One forward and backward pass of the loss from TOKENS final hidden states (a batch of 16 x 256 by
default) through a VOCAB_SIZE x N_EMBD output layer, as train_model.py's model does it: "stock" is
GPT2LMHeadModel's way (the full logits, upcast to fp32, cross-entropy); "chunked" is
lmkit.lm_loss.ChunkedCrossEntropy at each chunk size (gradients made in the forward pass); "recompute" is
the other design, which keeps only the log-sum-exp and recomputes each chunk's logits in backward.
bf16 autocast on CUDA, fp32 on CPU. Times and peak memory (above the inputs) are medians; the ratio
is the median of per-repeat ratios against stock, measured back to back. Appends to BENCHMARKS.md.
"""

VOCAB_SIZE = 30000  # words in the output layer
N_EMBD = 128  # width of the hidden states (train_model.py's N_EMBD)
TOKENS = 4096  # tokens per pass (16 blocks of 256 by default)
CHUNK_SIZES = [64, 128, 256, 512, 1024, 4096]  # chunk sizes of the chunked rows
RECOMPUTE_CHUNK_SIZE = 0  # chunk size of the recompute row (0 = lm_loss's default for the device)
REPEATS = 7  # measurements per row; the table quotes medians
THREADS = 0  # torch threads on a CPU (0 = torch's default)
RECORD = True  # append the results to BENCHMARKS.md
SEED = 42  # hidden states, weights and targets

import time

from bench.support import median, peak_memory, report
from lmkit.folders import pick_device
from lmkit.settings import UserError, run_script


def recompute_loss():
    """The alternative to ChunkedCrossEntropy: keep only each token's log-sum-exp from the forward
    pass and recompute the chunk's logits in backward (four matmuls per chunk instead of three)."""
    import torch

    class RecomputedCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets, chunk_size):
            log_norms = []
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, hidden.shape[0], chunk_size):
                logits = (hidden[start:start + chunk_size] @ weight.T).float()
                log_norm = torch.logsumexp(logits, dim=1)
                log_norms.append(log_norm)
                total += (log_norm - logits.gather(1, targets[start:start + chunk_size, None]).squeeze(1)).sum()
            ctx.save_for_backward(hidden, weight, targets, torch.cat(log_norms))
            ctx.chunk_size = chunk_size
            return total

        @staticmethod
        def backward(ctx, grad_total):
            hidden, weight, targets, log_norms = ctx.saved_tensors
            grad_hidden, grad_weight = torch.empty_like(hidden), torch.zeros_like(weight, dtype=torch.float32)
            for start in range(0, hidden.shape[0], ctx.chunk_size):
                end = start + ctx.chunk_size
                logits = (hidden[start:end] @ weight.T).float()
                grad = logits.sub_(log_norms[start:end, None]).exp_()
                grad.scatter_add_(1, targets[start:end, None], grad.new_full((grad.shape[0], 1), -1.0))
                grad = (grad * grad_total).to(hidden.dtype)
                grad_hidden[start:end] = grad @ weight
                grad_weight += (grad.T @ hidden[start:end]).float()
            return grad_hidden, grad_weight.to(weight.dtype), None, None

    return RecomputedCrossEntropy.apply


def main(config):
    import torch

    from lmkit import lm_loss

    try:
        chunk_sizes = [int(size) for size in config.CHUNK_SIZES]
    except ValueError:
        raise UserError(f"CHUNK_SIZES takes whole numbers, not {config.CHUNK_SIZES}") from None
    if min(config.VOCAB_SIZE, config.N_EMBD, config.TOKENS, config.REPEATS, *chunk_sizes) < 1:
        raise UserError("VOCAB_SIZE, N_EMBD, TOKENS, REPEATS and every chunk size must be at least 1")
    if config.THREADS:
        torch.set_num_threads(config.THREADS)
    device = pick_device()
    on_cuda = device == "cuda"
    torch.manual_seed(config.SEED)
    hidden = torch.randn(config.TOKENS, config.N_EMBD, device=device)
    weight = (torch.randn(config.VOCAB_SIZE, config.N_EMBD, device=device) * 0.02).requires_grad_()
    targets = torch.randint(0, config.VOCAB_SIZE, (config.TOKENS,), device=device)
    recompute_chunk = config.RECOMPUTE_CHUNK_SIZE or lm_loss.default_chunk_size(device)
    recomputed = recompute_loss()

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else torch.autocast("cpu", enabled=False)

    def step(loss_of):
        def run():
            weight.grad = None
            states = hidden.detach().requires_grad_()
            with autocast():
                loss = loss_of(states)
            loss.backward()
            if on_cuda:
                torch.cuda.synchronize()
            return loss.item()
        return run

    setups = {"stock (full logits, fp32 cross-entropy)": step(lambda states: torch.nn.functional.cross_entropy(
        (states @ weight.T).float(), targets))}
    for size in chunk_sizes:
        setups[f"chunked, {size} tokens per chunk"] = step(
            lambda states, size=size: lm_loss.ChunkedCrossEntropy.apply(states, weight, targets, size, -100)
            / config.TOKENS)
    setups[f"recompute in backward, {recompute_chunk} per chunk"] = step(
        lambda states: recomputed(states, weight, targets, recompute_chunk) / config.TOKENS)

    losses = {name: run() for name, run in setups.items()}  # warm-up, and the values to compare
    peaks = {name: peak_memory(run, device) for name, run in setups.items()}
    seconds = {name: [] for name in setups}
    ratios = {name: [] for name in setups}
    threads = torch.get_num_threads()
    print(f"device {device}, torch threads {threads}; {config.TOKENS:,} tokens x {config.N_EMBD} wide into "
          f"{config.VOCAB_SIZE:,} words; {config.REPEATS} repeats")
    for repeat in range(config.REPEATS):
        for name, run in setups.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
        stock = seconds[next(iter(setups))][-1]
        for name in setups:
            ratios[name].append(stock / seconds[name][-1])
        print(f"  repeat {repeat + 1}/{config.REPEATS}: " + ", ".join(
            f"{s[-1] * 1000:.0f}" for s in seconds.values()) + " ms")

    stock_loss = losses[next(iter(setups))]
    headers = ["setup", "ms per pass", "tokens/s", "speed vs stock", "peak memory", "loss - stock loss"]
    rows = [[name, f"{median(seconds[name]) * 1000:,.0f}", f"{config.TOKENS / median(seconds[name]):,.0f}",
             f"{median(ratios[name]):.2f}x", f"{peaks[name] / 2**20:,.0f} MiB", f"{losses[name] - stock_loss:+.1e}"]
            for name in setups]
    notes = [f"one forward + backward of the loss of {config.TOKENS:,} tokens ({config.N_EMBD} wide) through a "
             f"{config.VOCAB_SIZE:,}-word output layer; {'bf16 autocast' if on_cuda else 'fp32'}, "
             f"torch threads {threads}, medians of {config.REPEATS}",
             "peak memory: above the inputs, " + ("torch.cuda.max_memory_allocated" if on_cuda else
                                                  "the CPU allocator as torch.profiler(profile_memory=True) sees it"),
             "speed vs stock: median of the per-repeat ratios (rows measured back to back in each repeat)"]
    report(__file__, headers, rows, notes, enabled=config.RECORD)


if __name__ == "__main__":
    run_script(main, globals())
