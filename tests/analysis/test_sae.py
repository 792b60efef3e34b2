"""Sparse autoencoders: the SAE's defining property (it finds ground-truth features hidden
in superposition), its constraints (unit decoder rows, exactly k active), the metrics on
hand-worked inputs, loss recovered at its two ends, activation files that stream and
refuse the wrong run or hook, and the feature browser (pure Python and real Chromium)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import scramble
from test_attention_page import Chromium, chromium  # noqa: F401  (the browser fixture)

from glassbox.analysis.activations import check_hook, collect, open_activations
from glassbox.analysis.attention_page import visible_token
from glassbox.analysis.sae import (
    SAE,
    SAEConfig,
    aux_k_loss,
    dead_fraction,
    dense_fraction,
    evaluate_sae,
    explained_variance,
    l0,
    load_sae,
    recovered,
    resample_dead,
    save_sae,
    train_sae,
)
from glassbox.analysis.sae_page import (
    feature_data,
    logit_effects,
    parse_features,
    sae_html,
    write_sae_html,
)
from glassbox.cli import main
from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models import build_model
from glassbox.runs import load_model, load_tokens

HOOK = "blocks.1.hook_resid_post"
TINY = [
    "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
    "--batch-size", "4", "--max-iters", "8", "--warmup-iters", "1", "--lr-decay-iters", "8",
    "--eval-interval", "4", "--eval-iters", "1", "--device", "cpu", "--no-progress",
]  # fmt: skip
TEXT = "the quick brown fox jumps over the lazy dog. <b>&amp;</b>\n" * 60


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-layer, 16-wide character run trained for 8 steps (about a second)."""
    folder = tmp_path_factory.mktemp("sae")
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    run = folder / "run"
    assert main(["train", "--data", str(folder / "text.txt"), "--run", str(run), *TINY]) == 0
    return run


def superposed(n_features=24, d=12, n=8192, p=0.04, seed=0):
    """n sparse non-negative features along random unit directions D (n_features, d),
    twice as many features as dimensions: rows X (n, d) and the true directions."""
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(n_features, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    active = rng.random((n, n_features)) < p
    X = (active * rng.uniform(0.5, 1.5, size=(n, n_features))) @ D  # (n, d)
    return X.astype(np.float32), D


# ---------------------------------------------------------------- the SAE itself


def test_an_l1_sae_recovers_features_hidden_in_superposition():
    X, D = superposed()
    config = SAEConfig(
        d_in=12, expansion=4, kind="relu", l1_coef=2.0, steps=800, batch_size=256, lr=1e-2,
        dead_tokens=256 * 50, resample_every=100,
    )  # fmt: skip
    start = SAE(config, generator=torch.Generator().manual_seed(0)).W_dec.detach().numpy()
    sae = train_sae(X, config)
    best = (D @ sae.W_dec.detach().numpy().T).max(axis=1)  # (24,) each true feature's best cos
    chance = (D @ start.T).max(axis=1)  # the same for the untrained, random dictionary
    assert chance.mean() < 0.75
    assert best.mean() > 0.97 and (best > 0.9).mean() >= 0.95 and best.min() > 0.85
    f = sae.encode(torch.from_numpy(X[:2000]))
    assert 1 < l0(f) < 4  # ~1 true feature per row (p · 24 = 0.96), a few SAE features
    assert explained_variance(torch.from_numpy(X[:2000]), sae.decode(f)) > 0.8  # L1 shrinks f


@pytest.mark.parametrize("kind", ["relu", "topk"])
def test_decoder_rows_stay_unit_norm_and_gradients_along_them_are_removed(kind):
    X, _ = superposed(n=2048)
    config = SAEConfig(d_in=12, expansion=3, kind=kind, k=5, steps=25, batch_size=64)
    sae = train_sae(X, config)
    norms = sae.W_dec.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    x = torch.from_numpy(X[:64])
    (sae(x) - x).pow(2).sum().backward()

    def cos_along() -> torch.Tensor:  # (m,) cosine of each row's gradient with the row
        g = sae.W_dec.grad
        return (g * sae.W_dec.detach()).sum(dim=1) / g.norm(dim=1).clamp_min(1e-12)

    assert cos_along().abs().max() > 0.1
    sae.remove_parallel_grad()
    assert cos_along().abs().max() < 1e-5


def test_topk_has_exactly_k_active_features_per_token():
    X, _ = superposed(n=2048)
    sae = train_sae(X, SAEConfig(d_in=12, expansion=4, kind="topk", k=7, steps=30, batch_size=64))
    f = sae.encode(torch.from_numpy(X))
    assert ((f > 0).sum(dim=-1) == 7).all() and (f >= 0).all()


def test_resampling_points_dead_features_at_inputs_and_resets_their_adam_state():
    X, _ = superposed(n=512)
    sae = train_sae(X, SAEConfig(d_in=12, expansion=2, kind="relu", steps=5, batch_size=64))
    opt = torch.optim.Adam(sae.parameters())
    x = torch.from_numpy(X[:256])
    (sae(x) - x).pow(2).sum().backward()
    opt.step()  # Adam now has moments for every parameter
    before = {name: p.detach().clone() for name, p in sae.named_parameters()}
    dead = torch.zeros(24, dtype=torch.bool)
    dead[[1, 7]] = True
    live_norm = sae.W_enc[:, ~dead].norm(dim=0).mean().item()
    assert resample_dead(sae, opt, x, dead, torch.Generator().manual_seed(0)) == 2
    centred = x * sae.scale - sae.b_dec  # (256, d): what the encoder reads
    directions = centred / centred.norm(dim=1, keepdim=True)
    with torch.no_grad():
        cos = sae.W_dec[dead] @ directions.T  # (2, 256)
        assert torch.allclose(cos.max(dim=1).values, torch.ones(2))  # each is an input
        torch.testing.assert_close(sae.W_enc[:, dead].T, sae.W_dec[dead] * 0.2 * live_norm)
    assert (sae.b_enc[dead] == 0).all()
    for name, p in sae.named_parameters():  # live features untouched
        rows = (slice(None), ~dead) if name == "W_enc" else ~dead
        if name != "b_dec":
            assert torch.equal(p.detach()[rows], before[name][rows])
    assert (opt.state[sae.W_dec]["exp_avg"][dead] == 0).all()
    assert (opt.state[sae.W_enc]["exp_avg_sq"][:, dead] == 0).all()
    assert (opt.state[sae.W_enc]["exp_avg_sq"][:, ~dead] != 0).any()


def test_auxk_reconstructs_the_error_with_dead_features_only():
    sae = SAE(SAEConfig(d_in=12, expansion=2, kind="topk", k=3))
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(0))
    pre = sae.pre_acts(x)  # (64, 24)
    error = x * sae.scale - sae(x) * sae.scale  # (64, 12), scaled units
    dead = torch.zeros(24, dtype=torch.bool)
    dead[[2, 5, 11]] = True  # fewer than k_aux = d // 2 = 6: all three take part
    loss = aux_k_loss(sae, pre, error, dead)
    e_hat = F.relu(pre[:, dead]) @ sae.W_dec[dead]  # (64, 12)
    expected = (e_hat - error).pow(2).sum() / (error - error.mean(dim=0)).pow(2).sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert (sae.W_enc.grad[:, ~dead] == 0).all() and (sae.b_enc.grad[~dead] == 0).all()
    assert (sae.W_dec.grad[~dead] == 0).all()
    assert (sae.W_enc.grad[:, dead] != 0).any() and (sae.W_dec.grad[dead] != 0).any()


def test_save_and_load_give_the_same_sae(tmp_path):
    X, _ = superposed(n=1024)
    sae = train_sae(X, SAEConfig(d_in=12, expansion=2, k=3, steps=10, batch_size=64))
    save_sae(sae, tmp_path / "sae", {"hook": "h"}, {"mse": 0.5})
    loaded, info = load_sae(tmp_path / "sae")
    x = torch.from_numpy(X[:50])
    assert torch.equal(loaded(x), sae(x)) and loaded.config == sae.config
    assert info["hook"] == "h" and info["sae"]["k"] == 3
    assert json.loads((tmp_path / "sae" / "metrics.json").read_text())["mse"] == 0.5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expansion": 0.5}, "expansion must be >= 1"),
        ({"k": 65}, "k must be between 1 and the 64 features (expansion 4 x d 16); got 65"),
        ({"k": 0}, "k must be between 1"),
        ({"kind": "gated"}, "kind must be one of relu, topk"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"warmup_fraction": 0.9}, "warmup_fraction + decay_fraction must be <= 1"),
    ],
)
def test_sizes_that_do_not_fit_are_one_line_errors(changes, message):
    with pytest.raises(GlassboxError, match=re.escape(message)) as info:
        SAEConfig(**{"d_in": 16, "expansion": 4, **changes})
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- metrics


def test_metrics_on_hand_worked_inputs():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 2.0], [2.0, -2.0]])  # mean (2, 0)
    # Σ‖x − x̄‖² = 1 + 1 + 4 + 4 = 10; the reconstruction misses by 1 in one place
    x_hat = x.clone()
    x_hat[2, 1] = 1.0
    assert explained_variance(x, x_hat) == pytest.approx(0.9)
    assert explained_variance(x, x) == 1.0
    assert explained_variance(x, x.mean(dim=0).expand_as(x)) == pytest.approx(0.0)
    f = torch.tensor([[0.0, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 3.0], [0.0, 1.0, 0.0, 1.0]])
    assert l0(f) == pytest.approx(5 / 3)
    counts = (f > 0).sum(dim=0)  # [0, 2, 0, 3]
    assert dead_fraction(counts) == 0.5
    assert dense_fraction(counts, n_tokens=3) == 0.5  # both live features: > 10% of 3
    assert dense_fraction(torch.tensor([0, 1, 10, 11]), n_tokens=100) == 0.25  # > 10, not >=
    assert recovered(2.0, 2.0, 5.0) == 1.0 and recovered(2.0, 5.0, 5.0) == 0.0
    assert recovered(2.0, 2.3, 5.0) == pytest.approx(0.9)


def identity_sae(d: int) -> SAE:
    """x̂ = ReLU(x) − ReLU(−x) = x exactly: features [x, −x] along the rows of [I; −I]."""
    sae = SAE(SAEConfig(d_in=d, expansion=2, kind="relu"))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_dec.copy_(torch.cat([eye, -eye]))  # (2d, d), unit rows
        sae.W_enc.copy_(torch.cat([eye, -eye]).T)  # (d, 2d)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_loss_recovered_is_one_for_an_identity_sae_and_zero_for_a_zero_one():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = scramble(build_model(config)).eval()
    tokens = np.random.default_rng(0).integers(0, 11, size=400).astype(np.uint16)
    exact = evaluate_sae(identity_sae(16), model, HOOK, tokens, n_tokens=256, batch_size=8)
    assert exact["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert exact["loss_recovered_mean"] == pytest.approx(1.0, abs=1e-5)
    assert exact["mse"] < 1e-12 and exact["explained_variance"] == pytest.approx(1.0)
    assert exact["eval_tokens"] == 256 and exact["l0"] == 16  # x or −x fires, per dim
    assert abs(exact["ce_zero"] - exact["ce_clean"]) > 0.05  # the ratio is well defined
    zero = identity_sae(16)
    with torch.no_grad():
        zero.W_enc.zero_()  # nothing fires; x̂ = b_dec = 0
    none = evaluate_sae(zero, model, HOOK, tokens, n_tokens=256, batch_size=8)
    assert none["loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    assert none["l0"] == 0 and none["dead_fraction"] == 1.0
    assert none["ce_sae"] == pytest.approx(none["ce_zero"])


# ---------------------------------------------------------------- activation files


def test_collection_streams_the_hook_into_a_memmap_with_a_sidecar(tiny_run, tmp_path):
    n = 16 * 5 + 7  # five whole windows and part of a sixth
    acts = collect(tiny_run, HOOK, n_tokens=n, out_path=tmp_path / "a.npy", batch_size=2)
    assert (tmp_path / "a.npy").stat().st_size == 128 + n * 16 * 4  # .npy header + rows
    assert isinstance(acts.rows, np.memmap) and acts.rows.shape == (n, 16)
    meta = json.loads((tmp_path / "a.npy.json").read_text())
    assert meta["hook"] == HOOK and meta["d"] == 16 and meta["n_tokens"] == n
    assert meta["run"] == str(tiny_run.resolve()) and len(meta["starts"]) == 6
    assert not list(tmp_path.glob(".*tmp"))
    # the rows are the hook's activations on the windows the sidecar names
    model, _ = load_model(tiny_run)
    split = load_tokens(tiny_run, model.config.vocab_size, 16).splits["train"]
    x = torch.from_numpy(split[np.array(meta["starts"])[:, None] + np.arange(16)].astype(np.int64))
    expected = model.run_with_cache(x, names_filter=HOOK)[1][HOOK].reshape(-1, 16)[:n]
    torch.testing.assert_close(torch.from_numpy(np.array(acts.rows)), expected)
    assert meta["starts"][-1] + 17 <= len(split)  # the last window fits, x and y
    # batch size changes how it streams, not what it writes
    again = collect(tiny_run, HOOK, n_tokens=n, out_path=tmp_path / "b.npy", batch_size=64)
    assert np.array_equal(np.asarray(again.rows), np.asarray(acts.rows))
    ids, at, row0 = acts.contexts(split, np.array([16 + 5]), before=3, after=2)[0]
    assert at == 3 and row0 == 16 + 2 and len(ids) == 6
    assert ids == split[meta["starts"][1] + 2 : meta["starts"][1] + 8].tolist()


def test_an_activation_file_of_another_hook_or_run_is_refused(tiny_run, tmp_path):
    collect(tiny_run, "blocks.0.hook_resid_post", n_tokens=32, out_path=tmp_path / "a.npy")
    with pytest.raises(
        GlassboxError, match="holds blocks.0.hook_resid_post of .* not the blocks.1"
    ):
        open_activations(tmp_path / "a.npy", tiny_run, HOOK)
    other = tmp_path / "other"
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    assert main(["train", "--data", str(text), "--run", str(other), *TINY, "--seed", "9"]) == 0
    with pytest.raises(GlassboxError) as info:
        open_activations(tmp_path / "a.npy", other, "blocks.0.hook_resid_post")
    message = str(info.value)
    assert str(tiny_run.resolve()) in message and str(other.resolve()) in message
    assert "\n" not in message


def test_a_hook_that_does_not_exist_names_the_valid_ones(tiny_run):
    model, _ = load_model(tiny_run)
    with pytest.raises(GlassboxError, match="nearest: blocks.1.hook_resid_post"):
        check_hook(model, "blocks.1.hook_resid_pots", tiny_run)
    with pytest.raises(GlassboxError, match="valid names: hook_embed, hook_pos_embed, blocks.0"):
        check_hook(model, "nonsense", tiny_run)


# ---------------------------------------------------------------- the feature browser


@pytest.fixture(scope="module")
def browser_data(tiny_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    acts = collect(tiny_run, HOOK, n_tokens=640, out_path=folder / "a.npy")
    sae = train_sae(acts.rows, SAEConfig(d_in=16, expansion=4, k=4, steps=40, batch_size=64))
    model, tokenizer = load_model(tiny_run)
    split = load_tokens(tiny_run, model.config.vocab_size, 16).splits["train"]
    features = feature_data(sae, acts, split, tokenizer, [0, 5, 9], model=model, top=5)
    return sae, acts, features


def test_feature_data_holds_the_top_contexts_and_logit_effects(browser_data):
    sae, acts, features = browser_data
    assert [f["index"] for f in features] == [0, 5, 9]
    f_all = sae.encode(torch.from_numpy(np.array(acts.rows)))  # (640, 64)
    for f in features:
        column = f_all[:, f["index"]]
        assert f["density"] == pytest.approx(float((column > 0).double().mean()))
        assert f["max"] == pytest.approx(column.max().item(), abs=1e-4)
        assert sum(f["hist"]) == int((column > 0).sum())
        values = [c["value"] for c in f["contexts"]]
        top = column.topk(len(values)).values.tolist()
        assert values == pytest.approx(top, abs=1e-4)  # the strongest rows, in order
        for c in f["contexts"]:
            assert c["acts"][c["at"]] == pytest.approx(c["value"], abs=1e-4)
            assert len(c["tokens"]) == len(c["acts"])
        assert len(f["promoted"]) == len(f["suppressed"]) == 8
        assert f["promoted"][0][1] >= f["promoted"][-1][1] > f["suppressed"][-1][1]


@pytest.mark.parametrize("changes", [{}, {"norm": "rmsnorm"}, {"norm_placement": "post"}])
def test_logit_effects_are_the_direct_path_through_the_final_norm(changes):
    torch.manual_seed(0)
    model = scramble(build_model(ModelConfig(vocab_size=11, n_layer=1, n_embd=16, **changes)))
    v = torch.randn(3, 16)
    gain = model.ln_f.weight.detach() if changes.get("norm_placement") != "post" else 1.0
    centred = v - v.mean(dim=1, keepdim=True) if not changes else v  # LayerNorm centres
    expected = (centred * gain) @ model.W_U.detach()  # (3, 11)
    torch.testing.assert_close(logit_effects(model, v).float(), expected)


def test_the_page_is_self_contained_and_escapes_tokens(browser_data):
    page = sae_html(browser_data[2], title="<i>t</i>")
    for forbidden in ("http://", "https://", "src=", "<link", "@import", "url(", "fetch("):
        assert forbidden not in page, forbidden
    assert "<title>&lt;i&gt;t&lt;/i&gt;</title>" in page and page.count("<script") == 2
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    shown = json.loads(data.group(1))["features"][0]["contexts"][0]["tokens"]
    assert shown == browser_data[2][0]["contexts"][0]["tokens"]


def test_parse_features():
    assert parse_features("0-3", 10) == [0, 1, 2, 3]
    assert parse_features("5,1-2,5", 10) == [5, 1, 2]
    assert parse_features("all", 3) == [0, 1, 2]
    for bad, message in [
        ("0-10", "within 0-9"),
        ("5-3", "within"),
        ("x", "look like"),
        ("3-", "look like"),
    ]:
        with pytest.raises(GlassboxError, match=message):
            parse_features(bad, 10)


EVIL = "</script><script>window.pwned=1</script>"


def hand_made_features():
    context = {"tokens": ["a", EVIL, "\u21b5", "c"], "acts": [0.0, 0.5, 2.0, 1.0], "at": 2,
               "value": 2.0}  # fmt: skip
    return [
        {"index": 3, "density": 0.012, "max": 2.0, "mean": 0.8, "hist": [5, 0, 2, 1],
         "contexts": [context, {**context, "at": 3, "value": 1.0}],
         "promoted": [["x", 1.5], ["y", 0.2]], "suppressed": [["z", -0.7]]},
        {"index": 8, "density": 0.0, "max": 0.0, "mean": 0.0, "hist": [0, 0, 0, 0],
         "contexts": [], "promoted": [], "suppressed": []},
    ]  # fmt: skip


@pytest.mark.browser
def test_the_page_shows_each_feature_in_chromium(chromium, tmp_path):  # noqa: F811
    path = write_sae_html(tmp_path / "f.html", hand_made_features(), title="t <x>", info="i")
    page = chromium.open(path.as_uri())
    assert page.eval("document.body.dataset.ready") == "1"  # the script ran to its end
    assert page.eval("window.pwned === undefined")
    assert page.eval("document.title") == "t <x>"
    assert page.eval("[...document.querySelectorAll('#feature option')].map(o => o.text)") == [
        "3 (density 1.20%)", "8 (density 0.00%)",
    ]  # fmt: skip
    lines = page.eval("[...document.querySelectorAll('.ctx')].map(c => c.textContent)")
    assert lines == ["2.000a" + EVIL + "\u21b5c", "1.000a" + EVIL + "\u21b5c"]
    assert page.eval("[...document.querySelectorAll('.tok.top')].map(t => t.textContent)") == [
        "\u21b5", "c",
    ]  # fmt: skip
    assert page.eval("document.querySelectorAll('#hist rect.bar').length") == 4
    assert page.eval("document.querySelectorAll('#contexts script').length") == 0
    logits = page.eval("[...document.querySelectorAll('#promoted .logit')].map(e => e.textContent)")
    assert logits == ["+1.500  x", "+0.200  y"]
    assert "0.7" in page.eval("document.getElementById('suppressed').textContent")
    page.eval("show(1)")  # raises here if the page's JS throws
    assert page.eval("document.getElementById('feature').value") == "1"
    assert (
        page.eval("document.getElementById('contexts').textContent")
        == "never active on these tokens"
    )
    assert "feature 8" in page.eval("document.getElementById('stats').textContent")
    page.eval("document.getElementById('next').click()")
    assert page.eval("document.getElementById('feature').value") == "0"  # wraps around
    assert page.eval("document.querySelector('.tok.top').title") == "2.000"


def test_visible_tokens_survive_the_round_trip():
    assert visible_token("\n") == "\u21b5"  # what hand_made_features shows for a newline
