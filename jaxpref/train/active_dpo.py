"""ActiveDPO's Algorithm 1 as a recipe, with its rivals on the same loop.

Round t (of T) runs at the first step of its block of ⌈E·B / rows per step⌉ optimizer steps:

1. sample ``prompts_per_round`` prompts; the current policy π_{θ_{t−1}} answers each
   ``responses_per_prompt`` times; every pair of answers to a prompt is a candidate (C(3, 2) = 3
   per prompt); pairs with identical responses are dropped and counted;
2. the selector picks B pairs (``design`` does the selection on arrays):
   - ``activedpo``: φ = ĝ(x, y₁) − ĝ(x, y₂) from per-example LoRA gradients of r_θ = β log π_θ/π_ref
     (``llm.grad_features``, projected to k, normalised), greedy φᵀV⁻¹φ with V = λI + the past
     picks' φφᵀ (recomputed at θ_{t−1}, or stored) and the within-batch update (Eq. 3–4);
   - ``adpo_plus``: last-layer feature differences (``llm.sequence_features``) of the current
     policy, θ̂ the log-linear DPO MLE on the pairs labelled so far (``losses.fit_dpo_mle``),
     design vectors β√(μ(1 − μ))φ (``design.design_vectors``), greedy D-optimal from the past
     picks' vectors (ADPO, Kveton et al. arXiv 2503.01076, in this online loop);
   - ``apo``: one fixed pool of T·P prompts answered once by the initial policy (APO does not
     regenerate responses), last-layer features of the initial policy, greedy on ‖φ‖_{V⁻¹} with
     V = λI + Σ picks φφᵀ (practical APO, Das et al. arXiv 2402.10500);
   - ``aplp``: the prompts of highest predictive entropy (mean −log π_θ of their sampled answers,
     at least half of them), then the pairs of largest certainty |r̂(x, y₁) − r̂(x, y₂)|
     (Muldrew et al. arXiv 2402.08114);
   - ``uniform``: B pairs uniformly without replacement;
3. only the picked pairs are scored by the oracle and labelled (``oracle.label_pairs``);
4. E epochs of DPO on this round's labelled pairs (π_ref = the initial model).

Each round appends one line to ``active_rounds.jsonl`` in the run folder.

References: Lin et al., "ActiveDPO", arXiv 2505.19241, Algorithm 1.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref import design, llm
from jaxpref.data import pad_id
from jaxpref.llm.grad_features import lora_reward_grads
from jaxpref.losses import fit_dpo_mle
from jaxpref.train.config import ActiveDPOConfig
from jaxpref.train.online_dpo import OnlineDPO
from jaxpref.train.oracle import label_pairs
from jaxpref.train.rollout import left_padded, sample, sampling_kwargs


class Pool(NamedTuple):
    """A round's candidates: response rows and the pairs over them."""

    tokens: np.ndarray  # (M, W) prompt bucket + sampled tokens
    mask: np.ndarray  # (M, W)
    response: np.ndarray  # (M, W) response mask
    prompt_lengths: np.ndarray  # (M,)
    first: np.ndarray  # (N,) row of y₁ of each pair
    second: np.ndarray  # (N,) row of y₂
    prompt: np.ndarray  # (N,) which prompt of the round
    dropped: int  # pairs with identical responses, removed


def steps_per_round(config: ActiveDPOConfig, rows_per_step: int) -> int:
    return math.ceil(config.epochs_per_round * config.budget / rows_per_step)


@nnx.jit
def _row_stats(model, ref, ids, mask, loss):
    """Last-layer features and summed log-probs under the policy, and the reference log-probs."""
    features, logps = llm.features_and_logps(model, ids, mask, loss)
    return features, logps, llm.sequence_logps(ref, ids, mask, loss)[0]


class ActiveDPO(OnlineDPO):
    name = "active-dpo"

    def __init__(self, config: ActiveDPOConfig, tokenizer, oracle, *, reference: str):
        super().__init__(config, tokenizer, oracle, reference=reference)
        self.past: list[dict] = []  # per round: the picked pairs' rows, labels, stored φ
        self.fixed: dict | None = None  # APO's one pool
        self.labelled: dict | None = None
        self.metrics: dict[str, float] = {}

    def batch_source(self, trainer):
        c = self.config
        rows = trainer.micro_rows * c.gradient_accumulation_steps
        per_round = steps_per_round(c, rows)

        def source(step: int):
            t, u = divmod(step, per_round)
            if u == 0:
                self.run_round(trainer, t)
            idx = self.order[u * rows : (u + 1) * rows]
            idx = np.concatenate([idx, np.full(rows - len(idx), -1)])
            batch = self._gather(idx.reshape(c.gradient_accumulation_steps, -1))
            return jax.device_put(batch, trainer.batch_sharding), dict(self.metrics)

        return source

    def _gather(self, idx):
        weight = (idx >= 0).astype(np.float32)
        out = {"weight": weight}
        for k, v in self.labelled.items():
            x = v[idx.clip(0)]
            out[k] = x * weight[..., None].astype(x.dtype) if k.endswith("loss_mask") else x
        return out

    # ---- one round ------------------------------------------------------------------------

    def run_round(self, trainer, t: int) -> None:
        c = self.config
        model, frozen = trainer.models()
        ref = frozen["ref"] if "ref" in frozen else llm.without_adapters(model)
        key = jax.random.fold_in(jax.random.key(c.seed + 15), t)
        k_pool, k_label = jax.random.split(key)
        with jax.set_mesh(trainer.mesh):
            if c.selector == "apo":
                if self.fixed is None:
                    self.fixed = self._apo_pool(model, ref, k_pool, trainer)
                pool = self.fixed["pool"]
            else:
                pool = self.candidates(model, k_pool, c.prompts_per_round, t)
            picks, values = self.select(pool, model, ref, t)
            s = self.oracle.score(
                *(
                    np.concatenate([a[pool.first[picks]], a[pool.second[picks]]])
                    for a in (pool.tokens, pool.mask, pool.prompt_lengths)
                )
            )
        s1, s2 = s[: len(picks)], s[len(picks) :]
        labels = np.asarray(label_pairs(s1, s2, labeller=c.labeller, key=k_label))
        self._store(pool, picks, labels, model, ref)
        rng = np.random.default_rng([c.seed, 15, t])
        self.order = np.concatenate(
            [rng.permutation(len(picks)) for _ in range(c.epochs_per_round)]
        )
        self.metrics = {
            "active/round": float(t + 1),
            "active/labelled": float(len(picks) * (t + 1)),
            "active/pool_pairs": float(len(pool.first)),
            "active/identical_dropped": float(pool.dropped),
            "active/selection_value": float(np.mean(values)),
            "active/chosen_score": float(np.mean(np.maximum(s1, s2))),
        }
        row = {"round": t + 1, "selector": c.selector, "picks": picks.tolist()}
        row |= {"values": [float(v) for v in values], "labels": labels.tolist()}
        with (trainer.out / "active_rounds.jsonl").open("a") as f:
            f.write(json.dumps(row | self.metrics) + "\n")

    def candidates(self, model, key, n_prompts: int, t: int) -> Pool:
        """``n_prompts`` prompts, K answers each by ``model``, all pairs of distinct answers."""
        c, K = self.config, self.config.responses_per_prompt
        prompts = self.data["train"]
        rng = np.random.default_rng([c.seed, 16, t])
        chosen = rng.choice(len(prompts), n_prompts, replace=n_prompts > len(prompts))
        ids, mask = left_padded(prompts, np.repeat(chosen, K), pad_id(self.tokenizer))
        pad = pad_id(self.tokenizer)
        out = sample(model, ids, mask, key=key, **sampling_kwargs(c, self.tokenizer, pad))
        tokens, full = np.asarray(out.tokens), np.asarray(out.mask)
        combos = np.array(list(itertools.combinations(range(K), 2)))
        base = np.repeat(np.arange(n_prompts) * K, len(combos))
        first, second = (
            base + np.tile(combos[:, 0], n_prompts),
            base + np.tile(combos[:, 1], n_prompts),
        )
        same = np.all(tokens[first] == tokens[second], axis=1)
        keep = ~same
        return Pool(
            tokens,
            full,
            np.asarray(out.response_mask),
            np.asarray(out.prompt_lengths),
            first[keep],
            second[keep],
            (base // K)[keep],
            int(same.sum()),
        )

    # ---- selectors ------------------------------------------------------------------------

    def select(self, pool: Pool, model, ref, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(picks (B,) into the pool's pairs, the selector's value of each pick)."""
        c = self.config
        free = np.arange(len(pool.first))
        if c.selector == "apo":
            free = free[~self.fixed["taken"]]
        if len(free) < c.budget:
            raise ValueError(
                f"budget: {c.budget} pairs requested in round {t + 1} but the pool has only "
                f"{len(free)} pairs of distinct responses ({pool.dropped} identical pairs dropped)"
            )
        if c.selector == "uniform":
            rng = np.random.default_rng([c.seed, 17, t])
            return rng.choice(free, c.budget, replace=False), np.zeros(c.budget)
        if c.selector == "aplp":
            return self._aplp(pool, model, ref)
        phi, past = getattr(self, f"_{c.selector}_features")(pool, model, ref)
        sel = design.gradient_uncertainty_batch(phi[free], c.budget, lam=c.design_lambda, past=past)
        picks = free[np.asarray(sel.indices)]
        self._last_phi = np.asarray(phi)[picks]
        if c.selector == "apo":
            self.fixed["taken"][picks] = True
        return picks, np.asarray(sel.scores)

    def _grad_features(self, tokens, mask, response, model):
        c = self.config
        return lora_reward_grads(
            model,
            tokens,
            mask,
            response,
            beta=c.beta,
            block_size=c.grad_block_size,
            dim=c.projection_dim,
            kind=c.projection,
            key=jax.random.key(c.projection_seed),
        )

    def _activedpo_features(self, pool, model, ref):
        c = self.config
        g = self._grad_features(pool.tokens, pool.mask, pool.response, model)
        phi = design.pair_features(g, pool.first, pool.second, normalize=c.grad_normalization)
        if not self.past:
            return phi, None
        if c.past_features == "stored":
            return phi, jnp.concatenate([p["phi"] for p in self.past])
        past = []
        for p in self.past:  # recomputed at θ_{t−1} (Proposition 1)
            g_p = self._grad_features(p["tokens"], p["mask"], p["response"], model)
            n = len(p["labels"])
            pair = np.arange(n)
            past.append(design.pair_features(g_p, pair, pair + n, normalize=c.grad_normalization))
        return phi, jnp.concatenate(past)

    def _adpo_plus_features(self, pool, model, ref):
        c = self.config
        f, _, ref_lp = _row_stats(model, ref, pool.tokens, pool.mask, pool.response)
        phi = f[pool.first] - f[pool.second]
        b = ref_lp[pool.first] - ref_lp[pool.second]
        theta = jnp.zeros(phi.shape[1], phi.dtype)
        if not self.past:
            return design.design_vectors(theta, phi, b, beta=c.beta), None
        phi_p, b_p, s_p = [], [], []
        for p in self.past:
            fp, _, rp = _row_stats(model, ref, p["tokens"], p["mask"], p["response"])
            n = len(p["labels"])
            phi_p.append(fp[:n] - fp[n:])
            b_p.append(rp[:n] - rp[n:])
            s_p.append(jnp.asarray(p["labels"], phi.dtype))
        phi_p, b_p = jnp.concatenate(phi_p), jnp.concatenate(b_p)
        theta = fit_dpo_mle(
            phi_p, jnp.concatenate(s_p), beta=c.beta, gamma=c.design_lambda, ref_logratio=b_p
        ).theta
        past = design.design_vectors(theta, phi_p, b_p, beta=c.beta)
        return design.design_vectors(theta, phi, b, beta=c.beta), past

    def _apo_pool(self, model, ref, key, trainer) -> dict:
        c = self.config
        pool = self.candidates(model, key, c.prompts_per_round * c.rounds, 0)
        f, _, _ = _row_stats(model, ref, pool.tokens, pool.mask, pool.response)
        phi = f[pool.first] - f[pool.second]  # the initial policy's features, kept
        return {"pool": pool, "phi": phi, "taken": np.zeros(len(pool.first), bool)}

    def _apo_features(self, pool, model, ref):
        taken = self.fixed["taken"]
        phi = self.fixed["phi"]
        return phi, (phi[np.flatnonzero(taken)] if taken.any() else None)

    def _aplp(self, pool, model, ref):
        c = self.config
        _, lp, ref_lp = _row_stats(model, ref, pool.tokens, pool.mask, pool.response)
        lp, ref_lp = np.asarray(lp), np.asarray(ref_lp)
        rows = np.arange(len(lp)) // c.responses_per_prompt
        entropy = np.bincount(rows, -lp) / np.bincount(rows)  # MC predictive entropy per prompt
        ranked = np.argsort(-entropy, kind="stable")
        m = math.ceil(len(ranked) / 2)
        while True:
            keep = np.isin(pool.prompt, ranked[:m])
            if keep.sum() >= c.budget or m >= len(ranked):
                break
            m += 1
        r = c.beta * (lp - ref_lp)
        certainty = np.abs(r[pool.first] - r[pool.second])
        candidates = np.flatnonzero(keep)
        order = candidates[np.argsort(-certainty[candidates], kind="stable")[: c.budget]]
        return order, certainty[order]

    def _store(self, pool, picks, labels, model, ref) -> None:
        """This round's labelled DPO pairs, and its picks for the next rounds' V."""
        win = np.where(labels > 0, pool.first[picks], pool.second[picks])
        lose = np.where(labels > 0, pool.second[picks], pool.first[picks])
        self.labelled = {}
        for side, rows in (("chosen", win), ("rejected", lose)):
            self.labelled[f"{side}_input_ids"] = pool.tokens[rows]
            self.labelled[f"{side}_attention_mask"] = pool.mask[rows]
            self.labelled[f"{side}_loss_mask"] = pool.response[rows]
        rows = np.concatenate([pool.first[picks], pool.second[picks]])
        entry = {"labels": labels, "phi": getattr(self, "_last_phi", None)}
        entry |= {"tokens": pool.tokens[rows], "mask": pool.mask[rows]}
        entry["response"] = pool.response[rows]
        self.past.append(entry)
