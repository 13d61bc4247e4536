"""ADPO §6.2 on LLM features at test scale: the pipeline, not a winner. The features and offsets
of the cached matrix are the model's, the picks are the selectors' on that matrix, bad pools and
budgets are refused before any forward pass."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref import design, llm
from jaxpref.data import encode_preferences, load_tokenizer, pairs_from_rows, shipped_hh_rows
from jaxpref.experiments import adpo_llm
from jaxpref.metrics.preference_fit import pair_fit_metrics

CFG = adpo_llm.config("test")
BAD_ROWS = [
    {"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " yes", "rejected": " yes"},
    {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"},
]


def pool_rows():
    return shipped_hh_rows()[:50] + BAD_ROWS


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    work = tmp_path_factory.mktemp("adpo_llm")
    results = adpo_llm.run(CFG, work_dir=work, rows=pool_rows())
    return results, work, np.load(work / "features.npz")


def test_bad_rows_are_reported_and_dropped(outcome):
    results, _, cached = outcome
    pool = results["pool"]
    assert pool["rows"] == 52 and pool["malformed"].get("identical") == 1
    assert 50 in pool["malformed_rows"] and 51 in pool["malformed_rows"]
    assert pool["N"] == CFG.num_pairs == cached["phi"].shape[0]
    assert pool["d"] == CFG.hidden_size


def test_cached_features_and_offsets_are_the_models(outcome):
    results, work, cached = outcome
    model = llm.from_pretrained(work / "base")
    tok = load_tokenizer()
    data = pairs_from_rows(pool_rows())
    encoded, _ = encode_preferences(
        tok, data.pairs, max_length=CFG.max_length, max_prompt_length=CFG.max_prompt_length
    )
    keep = np.sort(np.random.default_rng(CFG.seed).choice(len(encoded), CFG.num_pairs, False))
    for i in (0, CFG.num_pairs - 1):  # two pairs, each row alone and unpadded
        enc = encoded[keep[i]]
        feats, logps = [], []
        for response in (enc.chosen, enc.rejected):
            ids = jnp.asarray([enc.prompt + response])
            loss = jnp.asarray([[0] * len(enc.prompt) + [1] * len(response)])
            feats.append(np.asarray(llm.sequence_features(model, ids, jnp.ones_like(ids))[0]))
            logps.append(float(llm.sequence_logps(model, ids, jnp.ones_like(ids), loss)[0][0]))
        np.testing.assert_allclose(cached["features_w"][i], feats[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(cached["features_l"][i], feats[1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(cached["logps_w"][i], logps[0], rtol=1e-5)
        np.testing.assert_allclose(cached["logps_l"][i], logps[1], rtol=1e-5)
    raw = cached["features_w"].astype(np.float64) - cached["features_l"]
    np.testing.assert_allclose(cached["phi"], raw / np.linalg.norm(raw, axis=1).max())
    b = cached["logps_w"] - cached["logps_l"]  # Assumption 2: rescaled to max |b_i| = 1
    np.testing.assert_allclose(cached["ref_logratio"], b / np.abs(b).max())


def test_picks_equal_the_selectors_on_the_cached_matrix(outcome):
    results, _, cached = outcome
    n = int(CFG.grid[-1])
    with jax.enable_x64(True):
        phi = jnp.asarray(cached["phi"])
        b = jnp.asarray(cached["ref_logratio"])
        s = jnp.ones(phi.shape[0])
        kw = dict(beta=CFG.beta, gamma=CFG.gamma)
        for seed in range(CFG.seeds):
            key = jax.random.key(seed)
            direct = {
                "ADPO": design.adpo(
                    key, phi, s, b, n, alpha=CFG.alpha, num_candidates=CFG.num_candidates, **kw
                ),
                "ADPO+": design.adpo_plus(phi, s, b, n, alpha=CFG.alpha, **kw),
                "APO": design.apo(phi, n, gamma=CFG.gamma),
                "certainty": design.certainty(phi, s, b, n, **kw),
                "uniform": design.uniform(key, phi.shape[0], n),
            }
            for method, res in direct.items():
                np.testing.assert_array_equal(
                    results["picks"][method][seed], np.asarray(res.indices), err_msg=method
                )
                assert len(set(results["picks"][method][seed])) == n


def test_curves_cover_the_grid_and_figure_is_written(outcome, tmp_path):
    results, _, _ = outcome
    for r in results["methods"].values():
        for f in adpo_llm.FIELDS:
            assert np.asarray(r[f]["runs"]).shape == (CFG.seeds, len(CFG.grid))
            assert np.all(np.isfinite(r[f]["mean"]))
        assert np.all(np.asarray(r["max_logit_error"]["runs"]) >= 0)
    for field in ("ADPO+", "APO", "certainty"):  # deterministic on a fixed pool
        assert np.ptp(np.asarray(results["methods"][field]["nll"]["runs"]), axis=0).max() == 0
    assert "ADPO+" in adpo_llm.table(results)
    (path,) = adpo_llm.plot(results, tmp_path)
    assert path.stat().st_size > 0


def test_pair_fit_metrics_against_a_loop(library_checks_only):
    rng = np.random.default_rng(0)
    phi, b, theta = rng.normal(size=(7, 3)), rng.normal(size=7), rng.normal(size=3)
    with jax.enable_x64(True):
        m = pair_fit_metrics(jnp.asarray(theta), jnp.asarray(phi), jnp.asarray(b), beta=0.5)
    h = [0.5 * (sum(p * t for p, t in zip(row, theta)) - bi) for row, bi in zip(phi, b)]
    assert float(m.accuracy) == pytest.approx(sum(x > 0 for x in h) / 7)
    assert float(m.margin) == pytest.approx(sum(h) / 7)
    assert float(m.nll) == pytest.approx(sum(np.log1p(np.exp(-x)) for x in h) / 7)
    with pytest.raises(ValueError, match="theta: expected shape"):
        pair_fit_metrics(jnp.zeros(2), jnp.asarray(phi), jnp.asarray(b))


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        ({"log2_n": (2, 6)}, {}, "log2_n: the largest budget n = 64 exceeds the pool's 40 pairs"),
        ({}, {"projection": np.zeros((31, 8))}, r"projection: expected shape \(32, d\)"),
        ({"proj_dim": 4}, {"projection": np.zeros((32, 8))}, "projection: has 8 columns"),
        ({"pooling": "max"}, {}, "pooling: unknown 'max'"),
        ({"offset_scale": "sum"}, {}, "offset_scale: unknown 'sum'"),
    ],
)
def test_bad_input_is_refused_before_any_forward_pass(tmp_path, change, kwargs, message):
    cfg = dataclasses.replace(CFG, **change)
    with pytest.raises(ValueError, match=message):
        adpo_llm.run(cfg, work_dir=tmp_path, rows=pool_rows(), **kwargs)
    assert not (tmp_path / "base").exists() and not (tmp_path / "features.npz").exists()
