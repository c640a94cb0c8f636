"""The causal language-model loss without the [tokens x vocabulary] logits.

With a 30,000-word output layer the logits are the largest thing a training step makes: 256 tokens
x 30,000 words in bf16, their fp32 copy for the softmax and the gradients of both. `lm_loss` takes
the final hidden states instead and works through them a chunk of tokens at a time: per chunk it
computes the logits, their log-sum-exp and the loss, and at once the chunk's gradients (softmax
minus one-hot, times the output layer), then drops the logits. Only one chunk's logits exist at any
moment, and the backward pass has nothing left to compute but a scaling.

`use_chunked_loss(model)` makes a GPT2LMHeadModel compute its training loss this way. The model
stays a plain GPT2LMHeadModel (same weights, config and save_pretrained folder); only the forward
of that one instance changes, and only when it is given labels.
"""

import types

import torch

IGNORE_INDEX = -100  # labels the loss skips, as in transformers and torch.nn.functional.cross_entropy
# Tokens per chunk. On a CPU, smaller chunks keep the softmax's passes over the logits in cache;
# larger ones make every op long enough to split well between threads, which matters most when
# other processes compete for the cores. bench/lm_loss_speed.py found 512 (61 MB of fp32 logits)
# the fastest or close to it with 1 and 2 threads, 1.2-1.9x the stock loss. A GPU wants
# larger chunks to stay busy: 2,048 tokens x 30,000 words cost 0.37 GB while they live (bf16
# logits, then fp32 probabilities and their bf16 copy), a sixteenth of the 5.9 GB (16,384 tokens x
# 30,000 x 12 bytes) that the stock loss makes for a batch of 64 x 256 tokens.
CPU_CHUNK_SIZE = 512
CUDA_CHUNK_SIZE = 2048


def default_chunk_size(device_type):
    return CUDA_CHUNK_SIZE if device_type == "cuda" else CPU_CHUNK_SIZE


def _compute_dtype(tensor):
    """The dtype autocast would run a matmul on `tensor` in (bf16/fp16 under CUDA autocast), else its own."""
    device_type = tensor.device.type
    if device_type in ("cuda", "cpu") and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


class ChunkedCrossEntropy(torch.autograd.Function):
    """Sum over tokens of cross-entropy(hidden @ weight.T, target), one chunk of tokens at a time.

    The gradients are computed in the forward pass (as liger-kernel's fused linear cross-entropy
    does): the chunk's softmax is at hand there, so this costs three matmuls per chunk, as the
    stock loss does, where recomputing the logits in backward would cost four. Under autocast
    the matmuls run in the autocast dtype; the softmax and the sums are fp32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, ignore_index):
        dtype = _compute_dtype(hidden)
        wants_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        with torch.autocast(hidden.device.type, enabled=False):  # the casts below are explicit
            matrix = weight.to(dtype)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            if wants_grad:
                grad_hidden = torch.empty_like(hidden)
                grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            for start in range(0, hidden.shape[0], chunk_size):
                end = start + chunk_size
                states = hidden[start:end].to(dtype)
                wanted = targets[start:end]
                keep = (wanted != ignore_index).unsqueeze(1)
                safe = torch.where(keep, wanted.unsqueeze(1), 0)  # any valid index; masked out below
                logits = states @ matrix.T
                # aten's softmax makes its passes over a row while the row sits in cache, where
                # logsumexp and exp(logits - lse) would each stream the whole chunk. The loss
                # lse - logit[target] follows from it exactly: lse = max + log(sum exp(logits -
                # max)), and that sum is 1 / the largest probability (which is >= 1/vocabulary,
                # so it never underflows, unlike the target's probability).
                probabilities = torch.softmax(logits, dim=1, dtype=torch.float32)
                top = logits.amax(dim=1, keepdim=True).float()
                loss = top - logits.gather(1, safe).float() - probabilities.amax(dim=1, keepdim=True).log()
                total += torch.where(keep, loss, 0.0).sum()
                del logits  # only the probabilities are needed from here: one [chunk x vocabulary] fewer
                if not wants_grad:
                    continue
                # d loss / d logits = softmax - one-hot; an ignored token's row is left as it is
                # and zeroed on the [chunk x width] side of each product, which costs far less
                grad_logits = probabilities.scatter_add_(1, safe, -keep.to(probabilities.dtype)).to(dtype)
                states = torch.where(keep, states, 0)
                grad_hidden[start:end] = torch.where(keep, grad_logits @ matrix, 0)
                if dtype == torch.float32:
                    grad_weight.addmm_(grad_logits.T, states)
                else:
                    grad_weight += (grad_logits.T @ states).float()
        if wants_grad:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_total, grad_weight * grad_total, None, None, None


def lm_loss(hidden_states, weight, labels, chunk_size=CPU_CHUNK_SIZE, ignore_index=IGNORE_INDEX,
            num_items_in_batch=None, shift_labels=None):
    """The loss GPT2LMHeadModel computes from its logits, computed from the hidden states instead.

    hidden_states: [batch, sequence, width], the transformer's output after its final layer norm.
    weight: [vocabulary, width], the output layer (tied to the token embedding; its gradient
    flows there). labels: [batch, sequence], unshifted, as the model takes them: position i
    predicts labels[i + 1]; `ignore_index` marks tokens that count for nothing. As in
    transformers' ForCausalLMLoss, the summed loss is divided by `num_items_in_batch` when the
    Trainer gives it (gradient accumulation, several devices), else by the number of counted tokens.
    """
    if shift_labels is None:
        shift_labels = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    targets = shift_labels.reshape(-1).to(hidden.device)
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"{targets.shape[0]} labels for {hidden.shape[0]} hidden states")
    total = ChunkedCrossEntropy.apply(hidden, weight, targets, chunk_size, ignore_index)
    if num_items_in_batch is None:
        return total / (targets != ignore_index).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def use_chunked_loss(model, chunk_size):
    """Make `model`, a GPT2LMHeadModel, compute its loss with lm_loss whenever it is given labels.

    Only this instance's forward changes, so DDP, torch.compile and the Trainer's autocast wrapper,
    which all call `model.forward`, pick it up, and save_pretrained writes the usual weights and
    config. Without labels (generation, or a caller that wants logits) the stock forward runs.
    The output is the stock one with `logits=None`: evaluate with prediction_loss_only.
    """
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    stock_forward = type(model).forward

    def forward(self, *args, labels=None, num_items_in_batch=None, shift_labels=None, **kwargs):
        if labels is None and shift_labels is None:
            return stock_forward(self, *args, **kwargs)
        kwargs.pop("logits_to_keep", None)  # the loss needs every position
        outputs = self.transformer(*args, **kwargs)
        loss = lm_loss(outputs.last_hidden_state, self.lm_head.weight, labels, chunk_size,
                       num_items_in_batch=num_items_in_batch, shift_labels=shift_labels)
        return CausalLMOutputWithCrossAttentions(loss=loss, logits=None, cache=outputs.cache,
                                                 hidden_states=outputs.hidden_states,
                                                 attentions=outputs.attentions,
                                                 cross_attentions=outputs.cross_attentions)

    model.forward = types.MethodType(forward, model)
    return model
