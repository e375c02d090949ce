"""Tiny KerasHub presets (DINOv2, SigLIP, CLIP) with random weights, written with save_to_preset: no download.

Each has the real classes of its family (backbone, image converter, and for SigLIP and CLIP a
tokenizer and preprocessor with a small vocabulary), at a 32-pixel input with two layers of width 16.
"""

from __future__ import annotations

import io
from pathlib import Path

SIZE = 32
WORDS = "red blue green black white checked striped shirt dress shoes jeans bag cotton leather".split()


def _keras_hub():
    import keras_hub

    return keras_hub


def save_dinov2(folder: Path) -> Path:
    """A tiny DINOv2 preset (with ImageNet normalisation, as the real ones)."""
    hub = _keras_hub()
    hub.models.DINOV2Backbone(
        patch_size=8,
        num_layers=2,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        image_shape=(SIZE, SIZE, 3),
        position_embedding_shape=(SIZE, SIZE),
    ).save_to_preset(folder)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    hub.layers.DINOV2ImageConverter(
        image_size=(SIZE, SIZE), scale=[1 / (255 * s) for s in std], offset=[-m / s for m, s in zip(mean, std)]
    ).save_to_preset(folder)
    return folder


def _sentencepiece_proto() -> bytes:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(WORDS)] * 4),
        model_writer=model,
        vocab_size=len(WORDS) + 4,
        model_type="WORD",
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        bos_piece="<s>",
        eos_piece="</s>",
        unk_piece="<unk>",
        minloglevel=2,
    )
    return model.getvalue()


def save_siglip(folder: Path) -> Path:
    """A tiny SigLIP preset: backbone, SentencePiece tokenizer, image converter, preprocessor."""
    hub = _keras_hub()
    tokenizer = hub.models.SigLIPTokenizer(proto=_sentencepiece_proto())
    vision = hub.models.SigLIPVisionEncoder(
        patch_size=8, hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32, image_shape=(SIZE, SIZE, 3)
    )
    text = hub.models.SigLIPTextEncoder(
        vocabulary_size=tokenizer.vocabulary_size(),
        embedding_dim=16,
        hidden_dim=16,
        num_layers=2,
        num_heads=2,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    hub.models.SigLIPBackbone(vision, text).save_to_preset(folder)
    converter = hub.layers.SigLIPImageConverter(image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0)
    hub.models.SigLIPPreprocessor(tokenizer=tokenizer, image_converter=converter, sequence_length=8).save_to_preset(
        folder
    )
    return folder


def _bpe() -> tuple[dict[str, int], list[str]]:
    """A byte-pair vocabulary of whole words: each word is merged letter by letter."""
    tokens, merges = [], []
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        for piece in pieces:
            if piece not in tokens:
                tokens.append(piece)
        merged = pieces[0]
        for piece in pieces[1:]:
            rule = f"{merged} {piece}"
            merged += piece
            if rule not in merges:
                merges.append(rule)
            if merged not in tokens:
                tokens.append(merged)
    tokens += ["<|startoftext|>", "<|endoftext|>"]  # the end token has the largest id, as CLIP's pooler expects
    return {token: i for i, token in enumerate(tokens)}, merges


def save_clip(folder: Path) -> Path:
    """A tiny CLIP preset: backbone, BPE tokenizer, image converter, preprocessor."""
    hub = _keras_hub()
    vocabulary, merges = _bpe()
    tokenizer = hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=merges)
    vision = hub.models.CLIPVisionEncoder(
        patch_size=8, hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32, image_shape=(SIZE, SIZE, 3)
    )
    text = hub.models.CLIPTextEncoder(
        vocabulary_size=len(vocabulary),
        embedding_dim=16,
        hidden_dim=16,
        num_layers=2,
        num_heads=2,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    hub.models.CLIPBackbone(vision, text, projection_dim=12).save_to_preset(folder)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    converter = hub.layers.CLIPImageConverter(
        image_size=(SIZE, SIZE), scale=[1 / (255 * s) for s in std], offset=[-m / s for m, s in zip(mean, std)]
    )
    hub.models.CLIPPreprocessor(tokenizer=tokenizer, image_converter=converter, sequence_length=8).save_to_preset(
        folder
    )
    return folder


SAVERS = {"dinov2": save_dinov2, "siglip": save_siglip, "clip": save_clip}
"""Each family's tiny preset writer."""
