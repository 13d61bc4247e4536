"""PM RLHF's five evaluation columns (Xiao et al., arXiv 2405.16455, §6.1 and Table 2) for a
language-model policy, each under the definitions the paper and its official code use, named
apart:

- ``pm_divergence``: the paper's — for two responses y₁, y₂ ~ π to a held-out prompt,
  KL(Bern(σ(log π(y₁) − log π(y₂))) ‖ Bern(σ(r(y₁) − r(y₂)))) with r = r_θ/β, averaged over
  prompts (``regularizers.pm_divergence``);
- ``pm_squared_gap``: the code's ``evaluation_pm`` — ((r_θ(y₁) − r_θ(y₂)) − (log π(y₁) −
  log π(y₂)))² with raw scores (``regularizers.code_pm_squared_gap``);
- ``length``: mean generated tokens (EOS counted);
- ``perplexity``: exp of the mean token NLL of the held-out *human* responses (the code's
  definition, on the SFT-format eval split); ``sample_perplexity``: the paper's E π(y)^{-1/|y|}
  over the samples;
- ``entropy`` / ``kl``: the code's per-token full-vocabulary entropy and KL to the reference,
  averaged over the sampled response tokens (``llm.token_stats``).

Beside them, :func:`greedy_comparison`: the greedy answers of two policies to the same prompts,
judged by a reward model (the win-rate of one over the other, as the DPO paper reports).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import llm
from jaxpref.llm.token_stats import token_entropy_kl
from jaxpref.metrics.alignment import WinRate, win_rate
from jaxpref.regularizers import code_pm_squared_gap, pm_divergence
from jaxpref.train.rollout import left_padded, rollout_step_key, sample_and_score


def alignment_columns(
    policy,
    ref,
    oracle,
    prompts,
    human,
    *,
    beta: float,
    sampling,
    tokenizer,
    mesh,
    seed: int = 0,
    batch_rows: int = 16,
) -> dict[str, float]:
    """The columns of the module docstring for ``policy`` on ``prompts`` (encoded prompts) and
    the held-out human responses ``human`` (``jaxpref.data.EncodedCompletion``s)."""
    logp, ref_logp, scores, lengths, ent, kl, toks = ([] for _ in range(7))
    for start in range(0, len(prompts), batch_rows):
        idx = np.arange(start, min(start + batch_rows, len(prompts)))
        idx = np.repeat(np.pad(idx, (0, batch_rows - len(idx)), constant_values=-1), 2)
        key = rollout_step_key(seed, start)
        samples, s, weight = sample_and_score(
            policy,
            prompts,
            idx,
            key,
            config=sampling,
            tokenizer=tokenizer,
            oracle=oracle,
            mesh=mesh,
        )
        with jax.set_mesh(mesh):
            out = _sample_stats(policy, ref, samples.tokens, samples.mask, samples.response_mask)
        keep = np.asarray(weight) > 0
        for acc, x in zip((logp, ref_logp, lengths, ent, kl, toks), out):
            acc.append(np.asarray(x)[keep])
        scores.append(np.asarray(s)[keep])
    logp, ref_logp, scores, lengths, ent, kl, toks = map(
        np.concatenate, (logp, ref_logp, scores, lengths, ent, kl, toks)
    )
    pair = lambda x: (jnp.asarray(x[0::2]), jnp.asarray(x[1::2]))  # noqa: E731
    (l1, l2), (s1, s2) = pair(logp), pair(scores)
    return {
        "pm_divergence": float(jnp.mean(pm_divergence(l1, l2, s1 / beta, s2 / beta))),
        "pm_squared_gap": float(jnp.mean(code_pm_squared_gap(l1, l2, s1, s2))),
        "length": float(lengths.mean()),
        "perplexity": human_perplexity(policy, human, tokenizer, mesh, batch_rows),
        "sample_perplexity": float(np.mean(np.exp(-logp / np.maximum(lengths, 1)))),
        "entropy": float(ent.sum() / max(toks.sum(), 1)),
        "kl": float(kl.sum() / max(toks.sum(), 1)),
        "score": float(scores.mean()),
        "kl_sampled": float(np.mean(logp - ref_logp)),
    }


@jax.jit
def _sample_stats(policy, ref, tokens, mask, response_mask):
    summed, _ = llm.sequence_logps(policy, tokens, mask, response_mask)
    ref_summed, _ = llm.sequence_logps(ref, tokens, mask, response_mask)
    entropy, kl, count = token_entropy_kl(policy, ref, tokens, mask, response_mask)
    return summed, ref_summed, jnp.sum(response_mask, -1), entropy, kl, count


@jax.jit
def _summed_logps(model, ids, mask, loss_mask):
    return llm.sequence_logps(model, ids, mask, loss_mask)[0]


def human_perplexity(policy, human, tokenizer, mesh, batch_rows: int) -> float:
    """exp(Σ NLL / Σ tokens) of held-out human responses under ``policy``."""
    from jaxpref.data import collate_sequences, pad_id

    nll, count = 0.0, 0
    for start in range(0, len(human), batch_rows):
        rows = human[start : start + batch_rows]
        b = collate_sequences(
            [r.prompt for r in rows], [r.completion for r in rows], pad_id=pad_id(tokenizer)
        )
        with jax.set_mesh(mesh):
            summed = _summed_logps(
                policy,
                jnp.asarray(b.input_ids),
                jnp.asarray(b.attention_mask),
                jnp.asarray(b.loss_mask),
            )
        nll -= float(jnp.sum(summed))
        count += int(b.loss_mask.sum())
    return float(np.exp(nll / max(count, 1)))


class GreedyComparison(NamedTuple):
    scores: np.ndarray  # (n,) the judge's reward of the policy's answer to each prompt
    baseline_scores: np.ndarray  # (n,) the same for the baseline's answer
    lengths: np.ndarray  # (n,) new tokens of the policy's answer (EOS counted)
    baseline_lengths: np.ndarray  # (n,) the same for the baseline
    identical: np.ndarray  # (n,) bool: both answers are the same tokens
    win: WinRate  # the policy's win-rate over the baseline (ties ½) and its standard error

    def summary(self, policy: str = "policy", baseline: str = "baseline") -> dict:
        """JSON-ready means under the names ``policy`` and ``baseline``: ``num_prompts``,
        ``mean_reward`` and ``mean_length`` of each side, the fraction of ``identical_answers``,
        ``<policy>_win_rate`` (a tie counts ½) and ``win_rate_se`` (NaN from one prompt)."""
        return {
            "num_prompts": len(self.scores),
            "mean_reward": {
                baseline: float(self.baseline_scores.mean()),
                policy: float(self.scores.mean()),
            },
            "mean_length": {
                baseline: float(self.baseline_lengths.mean()),
                policy: float(self.lengths.mean()),
            },
            "identical_answers": float(self.identical.mean()),
            f"{policy}_win_rate": float(self.win.rate),
            "win_rate_se": float(self.win.se),
        }


def greedy_comparison(
    policy, baseline, reward_model, prompts, *, tokenizer, max_new_tokens: int, seed: int = 0
) -> GreedyComparison:
    """The greedy (temperature 0) answers of ``policy`` and ``baseline`` to ``prompts``
    (``rollout.EncodedPrompt``s, left-padded into one batch), each scored by ``reward_model``
    on the prompt and answer (a ``llm.RewardModel`` over the same tokenizer), and
    ``metrics.alignment.win_rate`` of the policy's scores over the baseline's.

    References: Rafailov et al., arXiv 2305.18290, Section 6 (win-rate against a baseline
      policy under a judge).
    """
    if not prompts:
        raise ValueError("prompts: need at least one prompt, got none")
    ids, mask = left_padded(prompts, np.arange(len(prompts)), tokenizer.pad_token_id)
    out = {}
    for name, model in (("baseline", baseline), ("policy", policy)):
        gen = llm.generate(
            model,
            jnp.asarray(ids),
            jnp.asarray(mask),
            key=jax.random.key(seed),
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        lengths = np.asarray(gen.lengths)
        answers = [row[:n] for row, n in zip(np.asarray(gen.new_tokens), lengths)]
        out[name] = (np.asarray(reward_model(gen.tokens, gen.mask)), lengths, answers)
    (s, n, a), (b, bn, ba) = out["policy"], out["baseline"]
    same = np.array([np.array_equal(x, y) for x, y in zip(a, ba)])
    return GreedyComparison(s, b, n, bn, same, win_rate(s, b))
