"""Models built from Lightning Core ops (issue #15: BERT encoders, eager or as LC graphs).

- `TransformerEncoder`: a BERT-family encoder (config-driven) on "cpu" or "cuda", float32 /
  bfloat16 / float16; ``execution_mode="graph"`` runs one planned LC graph per (batch bucket,
  sequence bucket) (`bucket_size`), the default on CUDA.
- `TinyTransformerRunner`: the original's runner surface, a tiny pre-LN transformer run eagerly
  or as one compiled LC graph (``run(x, mode="eager" | "graph")``), with safetensors
  checkpoints (``save_checkpoint`` / ``load_checkpoint``).
- `VisionEncoder`: a ViT-style image encoder (patchify as unfold + GEMM, pre-LN layers, CLS or
  mean pooling, optional CLIP-style projection) from a Hugging Face ``ViTModel`` state dict or
  random weights; eager or one LC graph per batch size (the default on CUDA).
- `SentenceEncoder`: sentence embeddings (mean pooling + L2 normalisation), e.g.
  ``SentenceEncoder.from_pretrained("all-MiniLM-L6-v2").encode(["a sentence"])``;
  ``device="auto"`` picks the CPU or the GPU per batch bucket by measurement (`AutoPlacement`),
  ``devices=[...]`` runs data parallel, ``distributed=True`` shards across ranks (issue #17).
- `TensorParallelEncoder`: a BERT encoder split Megatron style across GPUs (or "cpu" shards),
  one all-reduce per block.

Loading checkpoints needs the optional dependencies ``safetensors`` and ``tokenizers``
(``pip install lightning-core[models]``); they are imported only when a model is loaded.
See docs/models.md.
"""
from ._bert import BertConfig, TransformerEncoder, bucket_size
from ._sentence import SentenceEncoder, resolve_model_dir
from ._runner import TinyTransformerConfig, TinyTransformerRunner
from ._placement import AutoPlacement, PlacementDecision
from ._tensor_parallel import TensorParallelEncoder
from ._vit import (VIT_KEY_SCHEMES, VisionConfig, VisionEncoder, convert_vit_state_dict,
                   random_vit_state_dict, vit_key_scheme)

__all__ = ["BertConfig", "TransformerEncoder", "SentenceEncoder", "resolve_model_dir", "bucket_size",
           "TinyTransformerConfig", "TinyTransformerRunner", "AutoPlacement", "PlacementDecision",
           "TensorParallelEncoder", "VisionConfig", "VisionEncoder", "random_vit_state_dict",
           "vit_key_scheme", "convert_vit_state_dict", "VIT_KEY_SCHEMES"]
