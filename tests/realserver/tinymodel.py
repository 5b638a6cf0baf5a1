"""Tiny random-weight chat models made offline for the real-server tier: nothing is downloaded.

One byte-level BPE tokenizer trained on a fixed text (so every byte string can be encoded and any JSON a
grammar asks for can be written), ChatML special tokens and template, and a llama-architecture model
with seeded random weights: as a GGUF for llama-server (`write_gguf`) or as a Hugging Face folder for
vLLM (`write_hf`, needs torch + transformers). The answers are noise; the wire behaviour is real.

    python tests/realserver/tinymodel.py gguf OUT.gguf
    python tests/realserver/tinymodel.py hf OUT_DIR
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)

# ChatML; a message without content (an assistant tool-call turn) renders as an empty turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + (message['content'] or '') + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Words the tokenizer learns merges from; seeded sentences of them plus JSON punctuation.
_WORDS = """the of and to in is that for it as with was on be by this are from at or an have not but all
can they which one more their about will would there also has when what some time people could other
than into only over new most very first after been because way use just these two may work how any
each year where system model data value many number should well between must such world part even much
answer question reason result yes no true false name city weather count list item request response
""".split()


@dataclass(frozen=True)
class Shape:
    """Sizes of the random llama model; the defaults give ~1M parameters (~0.3 ms per token, one thread)."""

    vocab_size: int = 512
    n_embd: int = 128
    n_ff: int = 384
    n_layer: int = 4
    n_head: int = 4
    n_ctx_train: int = 4096
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0


def corpus(seed: int = 0, sentences: int = 400) -> list[str]:
    """The fixed training text: seeded sentences and a few JSON lines."""
    rng = random.Random(seed)
    lines = [
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "." for _ in range(sentences)
    ]
    lines += [json.dumps({rng.choice(_WORDS): rng.choice(_WORDS), "n": i}) for i in range(50)]
    return lines


def train_tokenizer(shape: Shape = Shape(), seed: int = 0) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` of `shape.vocab_size` tokens, ChatML specials first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=shape.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    return tok


def _vocab(tok: Any) -> tuple[list[str], list[str]]:
    """Tokens in id order and merges as "a b" strings (tokenizers writes them as pairs or strings)."""
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def hf_weights(shape: Shape, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded random float32 llama weights in Hugging Face names and layout (Linear: out x in)."""
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    e, ff = shape.n_embd, shape.n_ff
    out = {
        "model.embed_tokens.weight": mat(vocab, e),
        "model.norm.weight": np.ones(e, np.float32),
        "lm_head.weight": mat(vocab, e),
    }
    for i in range(shape.n_layer):
        p = f"model.layers.{i}."
        out |= {
            p + "input_layernorm.weight": np.ones(e, np.float32),
            p + "self_attn.q_proj.weight": mat(e, e),
            p + "self_attn.k_proj.weight": mat(e, e),
            p + "self_attn.v_proj.weight": mat(e, e),
            p + "self_attn.o_proj.weight": mat(e, e),
            p + "post_attention_layernorm.weight": np.ones(e, np.float32),
            p + "mlp.gate_proj.weight": mat(ff, e),
            p + "mlp.up_proj.weight": mat(ff, e),
            p + "mlp.down_proj.weight": mat(e, ff),
        }
    return out


_GGUF_NAMES = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder Q/K rows from HF's rotate-half RoPE layout to GGUF llama's interleaved one (as llama.cpp's
    converter does), so both files hold the same model."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_weights(shape: Shape, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """`hf_weights` renamed for GGUF, Q and K rows reordered for its RoPE layout."""
    out = {}
    for name, w in hf_weights(shape, vocab, seed).items():
        stem = name.removesuffix(".weight")
        layer, _, part = stem.removeprefix("model.layers.").partition(".")
        gguf_name = f"blk.{layer}.{_GGUF_NAMES[part]}" if stem.startswith("model.layers.") else _GGUF_NAMES[stem]
        out[f"{gguf_name}.weight"] = (
            _rope_rows(w, shape.n_head) if part in ("self_attn.q_proj", "self_attn.k_proj") else w
        )
    return out


def write_gguf(path: Path, shape: Shape = Shape(), seed: int = 0) -> Path:
    """Write the tiny model as an F32 GGUF (llama arch, gpt2-style BPE vocab, ChatML template)."""
    import gguf

    tok = train_tokenizer(shape, seed)
    tokens, merges = _vocab(tok)
    special = {t: tokens.index(t) for t in SPECIAL_TOKENS}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("batchrun-tiny")
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head)
    w.add_rope_dimension_count(shape.n_embd // shape.n_head)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_layer_norm_rms_eps(shape.rms_eps)
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(special[END_OF_TEXT])
    w.add_eos_token_id(special[IM_END])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    for name, array in gguf_weights(shape, len(tokens), seed).items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_hf(out: Path, shape: Shape = Shape(), seed: int = 0) -> Path:
    """Write the same tokenizer and a random `LlamaForCausalLM` of the same shape as a HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = train_tokenizer(shape, seed)
    vocab = tok.get_vocab_size()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=END_OF_TEXT, eos_token=IM_END, pad_token=END_OF_TEXT, unk_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.n_embd,
        intermediate_size=shape.n_ff,
        num_hidden_layers=shape.n_layer,
        num_attention_heads=shape.n_head,
        num_key_value_heads=shape.n_head,
        max_position_embeddings=shape.n_ctx_train,
        rms_norm_eps=shape.rms_eps,
        rope_theta=shape.rope_theta,
        bos_token_id=tok.token_to_id(END_OF_TEXT),
        eos_token_id=tok.token_to_id(IM_END),
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in hf_weights(shape, vocab, seed).items()})
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("gguf", "hf"):
        print(__doc__, file=sys.stderr)
        return 2
    target = Path(argv[1])
    print(write_gguf(target) if argv[0] == "gguf" else write_hf(target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
