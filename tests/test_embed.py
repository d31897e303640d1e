"""polyculture.backends.embedding with a real (tiny, random) sentence-transformers model built here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_llm import build_tiny_tokenizer  # noqa: E402

from polyculture.backends.embedding import embed_texts, embedding_dim, load_embedder  # noqa: E402
from polyculture.errors import ConfigError, InputError  # noqa: E402

TEXTS = [
    "Family is very important in my country.",
    "La familia es muy importante.",
    "Η οικογένεια είναι σημαντική.",
    "الأسرة مهمة جدا",
    "가족은 중요하다",
    "家庭很重要",
    "",
]


def build_tiny_embedder(dest: Path) -> Path:
    """A random 2-layer BERT + mean pooling + Normalize, with a 'query' prompt, saved under dest."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    hf_dir = dest.parent / f"{dest.name}-hf"
    tok = build_tiny_tokenizer(hf_dir)
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=128,
            pad_token_id=tok.pad_token_id,
        )
    ).save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    st = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        prompts={"query": "Instruct: find the answer\nQuery: "},
        device="cpu",
    )
    st.save(str(dest))
    return dest


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory):
    path = build_tiny_embedder(tmp_path_factory.mktemp("emb") / "tiny-embed")
    return load_embedder(str(path), device="cpu")


def test_unit_norm_float32(embedder) -> None:
    v = embed_texts(embedder, TEXTS, batch_size=3)
    assert v.dtype == np.float32
    assert v.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # different texts, different vectors
    assert np.unique(v.round(5), axis=0).shape[0] == len(TEXTS)


def test_batch_size_does_not_change_vectors(embedder) -> None:
    a = embed_texts(embedder, TEXTS, batch_size=2)
    b = embed_texts(embedder, TEXTS, batch_size=64)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_empty_list_gives_zero_rows(embedder) -> None:
    v = embed_texts(embedder, [])
    assert v.shape == (0, embedding_dim(embedder)) == (0, 32)
    assert v.dtype == np.float32


def test_prompt_name_only_when_given(embedder) -> None:
    plain = embed_texts(embedder, TEXTS[:3])
    query = embed_texts(embedder, TEXTS[:3], prompt_name="query")
    assert not np.allclose(plain, query)
    np.testing.assert_allclose(np.linalg.norm(query, axis=1), 1.0, atol=1e-5)


def test_bad_input(embedder) -> None:
    with pytest.raises(ConfigError, match="no prompt named 'passage'"):
        embed_texts(embedder, TEXTS, prompt_name="passage")
    with pytest.raises(InputError, match=r"texts\[1\]"):
        embed_texts(embedder, ["a", None])  # type: ignore[list-item]
    with pytest.raises(InputError, match="list of strings"):
        embed_texts(embedder, "one string")
    with pytest.raises(ConfigError, match="resolve it to a path"):
        load_embedder("builtin:tiny-embed")
