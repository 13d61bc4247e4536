"""LoRA: identity at init, merge/unmerge, adapters-disabled equals base without a copy, and an
optimizer over adapter parameters only."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpref.llm import lora as lo
from jaxpref.llm.hf_io import from_pretrained, save_pretrained
from jaxpref.llm.logps import sequence_logps

GOLDEN = pathlib.Path(__file__).parent / "golden"
IDS = jnp.array([[3, 17, 42, 8, 90, 5], [0, 0, 11, 12, 13, 14]])
MASK = jnp.array([[1] * 6, [0, 0, 1, 1, 1, 1]])
LOSS = MASK.at[:, :3].set(0)


@nnx.jit
def forward(model, ids, mask):
    return model(ids, mask)


@pytest.fixture(scope="module")
def base():
    return from_pretrained(GOLDEN / "llama3")


def adapted(seed=1, target=r"attn\.(q|v)_proj|mlp\.down_proj"):
    model = from_pretrained(GOLDEN / "llama3")
    config = lo.LoRAConfig(rank=4, alpha=8.0, target=target)
    names = lo.apply_lora(model, config, rngs=nnx.Rngs(seed))
    return model, names


def randomize_b(model):
    _, lora, _ = nnx.split(model, lo.LoRAParam, ...)
    keys = iter(jax.random.split(jax.random.key(7), 100))
    draw = lambda x: 0.3 * jax.random.normal(next(keys), x.shape, x.dtype)  # noqa: E731
    nnx.update(model, jax.tree.map(draw, lora))


def test_targets_and_identity_at_init(base):
    model, names = adapted()
    assert names == [
        f"layers.{i}.{p}" for i in (0, 1) for p in ("attn.q_proj", "attn.v_proj", "mlp.down_proj")
    ]
    assert model.layers[0].attn.q_proj.lora_a[...].shape == (32, 4)
    assert model.layers[0].attn.q_proj.lora_b[...].shape == (4, 32)
    np.testing.assert_array_equal(forward(model, IDS, MASK), forward(base, IDS, MASK))


def test_perturb_adapters_moves_every_factor_and_only_the_adapters(base):
    """After perturb_adapters ΔW ≠ 0 (the output moves off the base model's), ∇_A is no longer
    zero, the base weights are untouched, the noise has the requested scale, and one key gives
    one perturbation."""
    model, _ = adapted()
    _, before, base_before = nnx.split(model, lo.LoRAParam, ...)
    before, base_before = jax.tree.map(np.array, (before, base_before))
    lo.perturb_adapters(model, jax.random.key(3), scale=0.5)
    _, after, base_after = nnx.split(model, lo.LoRAParam, ...)
    jax.tree.map(np.testing.assert_array_equal, base_after, base_before)
    noise = np.concatenate(
        [np.ravel(a - b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before))]
    )
    assert np.all(noise != 0) and abs(np.std(noise) / 0.5 - 1) < 0.05  # 1,664 draws
    assert abs(np.mean(noise)) < 0.05
    assert not np.allclose(forward(model, IDS, MASK), forward(base, IDS, MASK))
    graphdef, lora, rest = nnx.split(model, lo.LoRAParam, ...)

    def total(lora):
        return sequence_logps(nnx.merge(graphdef, lora, rest), IDS, MASK, LOSS)[0].sum()

    grad_a = jax.grad(total)(lora)["layers"][0]["attn"]["q_proj"]["lora_a"][...]
    assert np.max(np.abs(grad_a)) > 0  # zero while B = 0
    again, _ = adapted()
    lo.perturb_adapters(again, jax.random.key(3), scale=0.5)
    jax.tree.map(np.testing.assert_array_equal, nnx.split(again, lo.LoRAParam, ...)[1], after)
    with pytest.raises(ValueError, match="model: has no LoRA adapters"):
        lo.perturb_adapters(base, jax.random.key(0), scale=0.1)


def test_merge_unmerge_identity(base):
    model, _ = adapted()
    randomize_b(model)
    adapted_out = forward(model, IDS, MASK)
    assert np.abs(np.asarray(adapted_out - forward(base, IDS, MASK))).max() > 1e-2
    kernel = np.asarray(model.layers[1].mlp.down_proj.kernel[...])
    lo.merge_lora(model)
    assert model.layers[1].mlp.down_proj.lora_merged
    np.testing.assert_allclose(forward(model, IDS, MASK), adapted_out, atol=1e-5)
    lo.unmerge_lora(model)
    np.testing.assert_allclose(model.layers[1].mlp.down_proj.kernel[...], kernel, atol=1e-6)
    np.testing.assert_allclose(forward(model, IDS, MASK), adapted_out, atol=1e-5)


def test_without_adapters_is_base_and_shares_arrays(base):
    model, _ = adapted()
    randomize_b(model)
    reference = lo.without_adapters(model)
    np.testing.assert_array_equal(forward(reference, IDS, MASK), forward(base, IDS, MASK))
    assert reference.layers[0].attn.q_proj.kernel[...] is model.layers[0].attn.q_proj.kernel[...]
    assert reference.embed.embedding[...] is model.embed.embedding[...]
    lo.merge_lora(model)
    with pytest.raises(ValueError, match="unmerge_lora"):
        lo.without_adapters(model)


def test_optimizer_over_adapters_only():
    model, _ = adapted()
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=lo.LoRAParam)
    n_adapter = len(jax.tree.leaves(nnx.state(model, lo.LoRAParam)))
    assert n_adapter == 12
    base_before = jax.tree.map(np.asarray, nnx.state(model, lo.BASE))

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            policy, _ = sequence_logps(model, IDS, MASK, LOSS)
            ref, _ = sequence_logps(lo.without_adapters(model), IDS, MASK, LOSS)
            return jnp.mean(jax.nn.softplus(-(policy - jax.lax.stop_gradient(ref))) - policy)

        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, lo.LoRAParam))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(3)]
    assert int(optimizer.step[...]) == 3 and losses[-1] < losses[0]
    jax.tree.map(np.testing.assert_array_equal, base_before, nnx.state(model, lo.BASE))
    assert np.abs(np.asarray(model.layers[0].attn.q_proj.lora_b[...])).max() > 0
    assert len(jax.tree.leaves(optimizer.opt_state)) == 2 * n_adapter + 1  # mu, nu, count


def test_save_requires_merge_and_bad_config(tmp_path):
    model, _ = adapted()
    with pytest.raises(ValueError, match="merge_lora"):
        save_pretrained(model, tmp_path)
    randomize_b(model)
    lo.merge_lora(model)
    save_pretrained(model, tmp_path)
    np.testing.assert_allclose(
        forward(from_pretrained(tmp_path), IDS, MASK), forward(model, IDS, MASK), atol=1e-5
    )
    with pytest.raises(ValueError, match="rank"):
        lo.LoRAConfig(rank=0)
    with pytest.raises(ValueError, match="matches no linear layer"):
        lo.apply_lora(model, lo.LoRAConfig(target="nonexistent"), rngs=nnx.Rngs(0))


def test_lora_on_stacked_scan_layers_kernels(tmp_path):
    """Adapters on a scan_layers model: one stacked (n_layers, …) factor pair per target, equal
    in effect to per-layer adapters; merge, without_adapters and save work on the stack."""
    model = from_pretrained(GOLDEN / "llama3", scan_layers=True)
    names = lo.apply_lora(model, lo.LoRAConfig(rank=4, alpha=8.0), rngs=nnx.Rngs(1))
    assert "layers.attn.q_proj" in names and "layers.mlp.down_proj" in names
    q = model.layers.attn.q_proj
    assert q.lora_a[...].shape == (2, 32, 4) and q.lora_b[...].shape == (2, 4, 32)
    assert q.lora_a.get_metadata()["logical_axes"] == ("layers", "embed", "lora_rank")
    base = from_pretrained(GOLDEN / "llama3")
    np.testing.assert_allclose(forward(model, IDS, MASK), forward(base, IDS, MASK), atol=5e-5)
    randomize_b(model)
    out = forward(model, IDS, MASK)
    # The same adapters attached per layer to the unscanned model give the same logits.
    loop = from_pretrained(GOLDEN / "llama3")
    lo.apply_lora(loop, lo.LoRAConfig(rank=4, alpha=8.0), rngs=nnx.Rngs(1))
    for p in ("q", "k", "v", "o"):
        stacked = getattr(model.layers.attn, f"{p}_proj")
        for i in range(2):
            layer = getattr(loop.layers[i].attn, f"{p}_proj")
            layer.lora_a[...], layer.lora_b[...] = stacked.lora_a[...][i], stacked.lora_b[...][i]
    for p in ("gate", "up", "down"):
        stacked = getattr(model.layers.mlp, f"{p}_proj")
        for i in range(2):
            layer = getattr(loop.layers[i].mlp, f"{p}_proj")
            layer.lora_a[...], layer.lora_b[...] = stacked.lora_a[...][i], stacked.lora_b[...][i]
    np.testing.assert_allclose(forward(loop, IDS, MASK), out, atol=5e-5)
    np.testing.assert_allclose(
        forward(lo.without_adapters(model), IDS, MASK), forward(base, IDS, MASK), atol=1e-5
    )
    lo.merge_lora(model)
    np.testing.assert_allclose(forward(model, IDS, MASK), out, atol=5e-5)
    save_pretrained(model, tmp_path)
    np.testing.assert_allclose(forward(from_pretrained(tmp_path), IDS, MASK), out, atol=5e-5)
