"""lmkit.lm_loss: the chunked loss against the stock GPT2LMHeadModel's, its memory, and what it saves."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2LMHeadModel

from bench.support import peak_memory
from conftest import tiny_gpt2
from lmkit import lm_loss

DEVICE = "cpu"  # parity in fp32; the CUDA path differs only in the matmuls' autocast dtype


def tiny_model(vocab_size=300, seed=0):
    """A GPT-2 built as train_model builds one (no dropout, exact GELU, fused attention), in training mode."""
    model = tiny_gpt2(vocab_size, n_positions=32, n_embd=32, n_layer=2, seed=seed, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu", bos_token_id=2,
                      eos_token_id=2, pad_token_id=0, attn_implementation="sdpa")
    model.loss_type = "ForCausalLM"
    return model.to(DEVICE)


def packed_blocks(vocab_size, blocks=4, length=32, seed=1):
    """Blocks as train_model packs them: stories of random words, each ended by <|endoftext|> (id 2)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (blocks, length), generator=generator)
    ids[torch.rand(blocks, length, generator=generator) < 0.05] = 2
    return ids.to(DEVICE)


def loss_and_gradients(model, ids, labels, autocast=None, **kwargs):
    model.zero_grad(set_to_none=True)
    with torch.autocast(ids.device.type, dtype=autocast, enabled=autocast is not None):
        loss = model(input_ids=ids, labels=labels, **kwargs).loss
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


CHECKED = ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
           "transformer.h.0.mlp.c_fc.weight", "transformer.h.1.attn.c_proj.bias", "transformer.ln_f.weight"]


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 128, 1000])  # 128 tokens: ones that do not divide it, and more
@pytest.mark.parametrize("ignored", [False, True])
def test_loss_and_gradients_match_the_stock_model(chunk_size, ignored):
    model = tiny_model()
    ids = packed_blocks(300)
    labels = ids.clone()
    if ignored:  # a masked span, and a whole row: -100 must count for nothing, in any chunk
        labels[0, 5:20] = -100
        labels[2] = -100
    stock_loss, stock_grads = loss_and_gradients(model, ids, labels)
    lm_loss.use_chunked_loss(model, chunk_size)
    loss, grads = loss_and_gradients(model, ids, labels)
    assert loss == pytest.approx(stock_loss, rel=1e-6)
    assert set(grads) == set(stock_grads)
    for name in CHECKED:
        torch.testing.assert_close(grads[name], stock_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    for name in grads:
        torch.testing.assert_close(grads[name], stock_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_under_bf16_autocast_it_matches_the_stock_model_to_bf16_precision(device):
    """The path train_model takes on a GPU: bf16 matmuls, fp32 softmax and sums (on a CPU too, slowly)."""
    model = tiny_model().to(device)
    ids = packed_blocks(300).to(device)
    labels = ids.clone()
    labels[1, :10] = -100
    stock_loss, stock_grads = loss_and_gradients(model, ids, labels, autocast=torch.bfloat16)
    lm_loss.use_chunked_loss(model, 24)
    loss, grads = loss_and_gradients(model, ids, labels, autocast=torch.bfloat16)
    fp32_loss, _ = loss_and_gradients(model, ids, labels)
    assert loss == pytest.approx(stock_loss, rel=2e-3) and loss != fp32_loss  # bf16 was used, and alike
    for name in CHECKED:
        scale = stock_grads[name].abs().max().item()
        torch.testing.assert_close(grads[name], stock_grads[name], rtol=0.05, atol=0.02 * scale, msg=name)


def test_under_autocast_the_logits_are_made_in_its_dtype():
    torch.manual_seed(0)
    hidden, weight = torch.randn(64, 32), torch.randn(500, 32)
    targets = torch.randint(0, 500, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = lm_loss.ChunkedCrossEntropy.apply(hidden, weight, targets, 10, -100)
    bf16 = torch.nn.functional.cross_entropy((hidden.bfloat16() @ weight.bfloat16().T).float(), targets,
                                             reduction="sum")
    fp32 = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    assert total.dtype == torch.float32 and total.item() == pytest.approx(bf16.item(), rel=1e-6)
    assert abs(total - fp32) > 100 * abs(total - bf16)


def test_the_output_layer_stays_tied_and_its_gradient_reaches_the_embedding():
    model = lm_loss.use_chunked_loss(tiny_model(), 16)
    assert model.lm_head.weight is model.transformer.wte.weight
    ids = packed_blocks(300)
    _, grads = loss_and_gradients(model, ids, ids)
    # rows of words never seen as input still get gradient through the output layer's softmax
    unseen = sorted(set(range(300)) - set(ids.flatten().tolist()))
    assert unseen and grads["transformer.wte.weight"][unseen].abs().sum() > 0


def test_num_items_in_batch_divides_the_summed_loss_as_the_trainer_expects():
    model = tiny_model()
    ids = packed_blocks(300)
    stock_loss, stock_grads = loss_and_gradients(model, ids, ids, num_items_in_batch=torch.tensor(500))
    lm_loss.use_chunked_loss(model, 30)
    loss, grads = loss_and_gradients(model, ids, ids, num_items_in_batch=torch.tensor(500))
    assert loss == pytest.approx(stock_loss, rel=1e-6)
    mean = model(input_ids=ids, labels=ids).loss.item()  # over the 4 x 31 predicted tokens
    assert loss == pytest.approx(mean * 4 * 31 / 500, rel=1e-5)
    torch.testing.assert_close(grads["transformer.wte.weight"], stock_grads["transformer.wte.weight"],
                               rtol=1e-4, atol=1e-6)


def test_without_gradients_the_loss_is_the_same():
    model = lm_loss.use_chunked_loss(tiny_model(), 40)
    ids = packed_blocks(300)
    with_grad = model(input_ids=ids, labels=ids).loss.item()
    with torch.no_grad():
        without = model(input_ids=ids, labels=ids).loss
    assert without.item() == pytest.approx(with_grad, rel=1e-6) and without.grad_fn is None


def test_large_losses_stay_exact():
    """A target the model all but rules out: its probability underflows fp32, its loss must not."""
    torch.manual_seed(0)
    hidden = torch.randn(64, 16, requires_grad=True)
    weight = torch.randn(1000, 16) * 20
    targets = (hidden @ weight.T).argmin(dim=1)  # the least likely word of each token
    labels = torch.cat([torch.zeros(1, dtype=torch.long), targets[:-1]]).unsqueeze(0)  # i predicts i + 1
    chunked = lm_loss.lm_loss(hidden.unsqueeze(0), weight, labels, chunk_size=10)
    exact = torch.nn.functional.cross_entropy((hidden[:-1] @ weight.T).double(), targets[:-1])
    assert exact > 150 and chunked.item() == pytest.approx(exact.item(), rel=1e-5)
    chunked = lm_loss.lm_loss(hidden.unsqueeze(0), weight, None, chunk_size=10, shift_labels=targets.unsqueeze(0))
    exact = torch.nn.functional.cross_entropy((hidden @ weight.T).double(), targets)
    assert exact > 150 and chunked.item() == pytest.approx(exact.item(), rel=1e-5)


def test_without_labels_the_stock_forward_runs_and_gives_logits():
    model = lm_loss.use_chunked_loss(tiny_model(), 16)
    ids = packed_blocks(300)
    outputs = model(input_ids=ids)
    assert outputs.logits.shape == (4, 32, 300) and outputs.loss is None
    assert model(input_ids=ids, labels=ids).logits is None  # the loss path never builds them


def test_a_training_step_peaks_lower_without_the_full_logits():
    vocab_size = 20000  # large enough for the logits to dominate: 256 tokens x 20k x 4 bytes = 20 MB each copy
    ids = packed_blocks(vocab_size, blocks=8)

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids).loss.backward()
        return run

    stock = tiny_model(vocab_size)
    fused = lm_loss.use_chunked_loss(tiny_model(vocab_size), 32)
    step(stock)(), step(fused)()  # first gradients allocated outside the measurement
    stock_peak, fused_peak = peak_memory(step(stock), DEVICE), peak_memory(step(fused), DEVICE)
    logits_bytes = 8 * 32 * vocab_size * 4
    assert stock_peak > 2 * logits_bytes  # the logits, their log-softmax and gradients
    # what remains is mostly weight-sized: the output layer's gradient and the embedding's
    assert fused_peak < logits_bytes < stock_peak / 2


def test_a_model_trained_with_the_chunked_loss_saves_as_a_plain_gpt2(tmp_path):
    tiny_model().save_pretrained(tmp_path / "stock")
    model = lm_loss.use_chunked_loss(tiny_model(), 16)
    ids = packed_blocks(300)
    model(input_ids=ids, labels=ids).loss.backward()
    model.save_pretrained(tmp_path / "chunked")
    config = json.loads((tmp_path / "chunked" / "config.json").read_text())
    assert config == json.loads((tmp_path / "stock" / "config.json").read_text())  # nothing of the loss leaks
    assert config["architectures"] == ["GPT2LMHeadModel"]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "chunked")
    assert type(loaded) is GPT2LMHeadModel and "forward" not in vars(loaded)
    torch.testing.assert_close(loaded(ids).logits, model(input_ids=ids).logits)
    assert loaded.generate(ids[:1, :4], max_new_tokens=3, do_sample=False, pad_token_id=0).shape == (1, 7)


# ---- pinned by mutation testing (issue 23): the cases the parity tests above leave out


def reference_loss(hidden, weight, targets, ignore_index=-100):
    """The summed cross-entropy of hidden @ weight.T, written directly."""
    return torch.nn.functional.cross_entropy(hidden @ weight.T, targets, ignore_index=ignore_index, reduction="sum")


def random_case(tokens=40, width=8, vocabulary=30, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(tokens, width, generator=generator)
    weight = torch.randn(vocabulary, width, generator=generator)
    targets = torch.randint(0, vocabulary, (tokens,), generator=generator)
    return hidden, weight, targets


@pytest.mark.parametrize("frozen", ["weight", "hidden"])
def test_gradients_flow_when_only_one_input_needs_them(frozen):
    """A frozen output layer (fine-tuning the body only), or frozen hidden states: the other still gets
    its gradient."""
    hidden, weight, targets = random_case()
    hidden.requires_grad_(frozen != "hidden")
    weight.requires_grad_(frozen != "weight")
    lm_loss.ChunkedCrossEntropy.apply(hidden, weight, targets, 7, -100).backward()
    want_hidden, want_weight = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    reference_loss(want_hidden, want_weight, targets).backward()
    live, want = (weight, want_weight) if frozen == "hidden" else (hidden, want_hidden)
    torch.testing.assert_close(live.grad, want.grad, rtol=1e-5, atol=1e-6)
    assert (hidden if frozen == "hidden" else weight).grad is None


def test_another_ignore_index_is_honoured():
    hidden, weight, labels = random_case()
    labels[::3] = -1
    hidden.requires_grad_()
    loss = lm_loss.lm_loss(hidden.unsqueeze(0), weight, labels.unsqueeze(0), chunk_size=6, ignore_index=-1)
    want_hidden = hidden.detach().clone().requires_grad_()
    want = torch.nn.functional.cross_entropy(want_hidden[:-1] @ weight.T, labels[1:], ignore_index=-1)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    loss.backward(), want.backward()
    torch.testing.assert_close(hidden.grad, want_hidden.grad, rtol=1e-5, atol=1e-7)


def test_ignored_tokens_change_neither_the_loss_nor_any_gradient():
    """What an ignored position holds must not matter, in fp32 and with bf16 matmuls (the output layer's
    gradient sums over every row of a chunk)."""
    hidden, weight, targets = random_case(tokens=48)
    targets[5:30] = -100
    other = hidden.clone()
    other[5:30] = torch.randn(25, hidden.shape[1]) * 10
    for autocast in (False, True):
        results = []
        for states in (hidden, other):
            states, matrix = states.clone().requires_grad_(), weight.clone().requires_grad_()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                total = lm_loss.ChunkedCrossEntropy.apply(states, matrix, targets, 16, -100)
            total.backward()
            results.append((total.item(), matrix.grad, states.grad))
        (loss_a, weight_a, hidden_a), (loss_b, weight_b, hidden_b) = results
        assert loss_a == loss_b and torch.equal(weight_a, weight_b), f"autocast={autocast}"
        assert torch.equal(hidden_a[30:], hidden_b[30:]) and hidden_a[5:30].abs().sum() == 0
        assert weight_a.abs().sum() > 0


def test_shift_labels_alone_give_the_loss_of_the_labels():
    model = lm_loss.use_chunked_loss(tiny_model(), 16)
    ids = packed_blocks(300)
    from_labels = model(input_ids=ids, labels=ids).loss
    shifted = torch.nn.functional.pad(ids, (0, 1), value=-100)[..., 1:]
    from_shifted = model(input_ids=ids, shift_labels=shifted).loss
    assert from_shifted is not None and from_shifted.item() == pytest.approx(from_labels.item(), rel=1e-6)


def test_an_integer_item_count_divides_the_sum_and_a_wrong_label_count_is_an_error():
    hidden, weight, labels = random_case()
    got = lm_loss.lm_loss(hidden.unsqueeze(0), weight, labels.unsqueeze(0), chunk_size=9, num_items_in_batch=100)
    want = torch.nn.functional.cross_entropy(hidden[:-1] @ weight.T, labels[1:], reduction="sum") / 100
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError, match="39 labels for 40 hidden states"):
        lm_loss.lm_loss(hidden.unsqueeze(0), weight, None, shift_labels=labels[1:].unsqueeze(0))


def test_chunk_sizes_and_compute_dtype_follow_the_device():
    assert lm_loss.default_chunk_size("cuda") == lm_loss.CUDA_CHUNK_SIZE == 2048
    assert lm_loss.default_chunk_size("cpu") == lm_loss.CPU_CHUNK_SIZE == 512
    tensor = torch.zeros(2, dtype=torch.float32)
    assert lm_loss._compute_dtype(tensor) == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lm_loss._compute_dtype(tensor) == torch.bfloat16
