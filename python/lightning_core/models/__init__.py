"""Models built from Lightning Core ops (issue #15, first slice: eager BERT encoders).

- `TransformerEncoder`: a BERT-family encoder (config-driven) on "cpu" or "cuda", float32 /
  bfloat16 / float16.
- `TinyTransformerRunner`: the original's runner surface, a tiny pre-LN transformer run eagerly
  or as one compiled LC graph (``run(x, mode="eager" | "graph")``), with safetensors
  checkpoints (``save_checkpoint`` / ``load_checkpoint``).
- `SentenceEncoder`: sentence embeddings (mean pooling + L2 normalisation), e.g.
  ``SentenceEncoder.from_pretrained("all-MiniLM-L6-v2").encode(["a sentence"])``.

Loading checkpoints needs the optional dependencies ``safetensors`` and ``tokenizers``
(``pip install lightning-core[models]``); they are imported only when a model is loaded.
See docs/models.md.
"""
from ._bert import BertConfig, TransformerEncoder
from ._sentence import SentenceEncoder, resolve_model_dir
from ._runner import TinyTransformerConfig, TinyTransformerRunner

__all__ = ["BertConfig", "TransformerEncoder", "SentenceEncoder", "resolve_model_dir",
           "TinyTransformerConfig", "TinyTransformerRunner"]
