"""A tiny but real sentence-embedding model, built offline: the local runtime's and the tests' stand-in for
a model from a hub (none is reachable here).

``build(directory)`` writes the model directory ``embeddings.encode`` loads (``model.onnx``,
``tokenizer.json``, ``embedding.json``):

- the tokenizer is a BPE model trained with the ``tokenizers`` library on a few sentences, with every
  ASCII letter and digit in its alphabet (so any English text tokenizes, unknown words into pieces), a
  ``[CLS] … [SEP]`` template and truncation to ``max_length``;
- the graph, made with the ``onnx`` helper API, is a token embedding lookup (a fixed, seeded table), then
  mean pooling over the attention mask, then L2 normalisation (``pooled=True``); with ``pooled=False`` it
  stops at the token embeddings ``[batch, tokens, dim]``, as most exported transformer models do.

Same arguments, same bytes: the table is seeded and the tokenizer's training deterministic.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

NAME = "tiny-embedder"
DIMENSION = 32
MAX_LENGTH = 64
VOCAB_SIZE = 400
OPSET = 17
_CORPUS = [
    "Invoices are due thirty days after the date of issue.",
    "The worker drains the queue and writes results to the bucket.",
    "A short job runs inline; a long one waits on the queue for a worker.",
    "Embeddings turn each text into a vector of numbers.",
    "GPUs encode thousands of sentences a second.",
    "Lambda bills per millisecond, Fargate per second, EC2 per instance hour.",
    "The quick brown fox jumps over the lazy dog.",
]
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def build_tokenizer(max_length: int = MAX_LENGTH) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = list(string.ascii_letters + string.digits + string.punctuation)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=_SPECIAL, initial_alphabet=alphabet,
                                  show_progress=False)
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer.enable_truncation(max_length)
    return tokenizer


def build_graph(vocab_size: int, *, dimension: int = DIMENSION, pooled: bool = True, seed: int = 7) -> onnx.ModelProto:
    table = np.random.default_rng(seed).standard_normal((vocab_size, dimension)).astype(np.float32)
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["tokens"], axis=0)]  # [batch, tokens, dim]
    if pooled:
        output = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", dimension])
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),  # [batch, tokens, 1]
            helper.make_node("Mul", ["tokens", "mask_3d"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "token_axis"], ["summed"], keepdims=0),  # [batch, dim]
            helper.make_node("ReduceSum", ["mask_3d", "token_axis"], ["counts"], keepdims=0),  # [batch, 1]
            helper.make_node("Max", ["counts", "epsilon"], ["safe_counts"]),
            helper.make_node("Div", ["summed", "safe_counts"], ["mean"]),
            helper.make_node("ReduceL2", ["mean"], ["norm"], axes=[1], keepdims=1),
            helper.make_node("Max", ["norm", "epsilon"], ["safe_norm"]),
            helper.make_node("Div", ["mean", "safe_norm"], ["sentence_embedding"]),
        ]
        inputs = [ids, mask]
    else:
        output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", dimension])
        nodes += [helper.make_node("Identity", ["tokens"], ["last_hidden_state"])]
        inputs = [ids, mask]
    initializers = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "last_axis"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "token_axis"),
        numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "epsilon"),
    ]
    if not pooled:
        initializers = initializers[:1]
    graph = helper.make_graph(nodes, NAME, inputs, [output], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="jobpipe-tests")
    model.ir_version = 8  # readable by every ONNX Runtime of the last few years
    onnx.checker.check_model(model)
    return model


def build(directory: Path, *, pooled: bool = True, max_length: int = MAX_LENGTH, dimension: int = DIMENSION,
          name: str = NAME) -> Path:
    """Write the model directory; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(max_length)
    tokenizer.save(str(directory / "tokenizer.json"))
    onnx.save(build_graph(tokenizer.get_vocab_size(), dimension=dimension, pooled=pooled), str(directory / "model.onnx"))
    (directory / "embedding.json").write_text(json.dumps({"name": name, "max_length": max_length}), encoding="utf-8")
    return directory


def build_encoder_graph(vocab_size: int, *, layers: int = 6, hidden: int = 384, heads: int = 12, ffn: int = 1536,
                        seed: int = 7) -> onnx.ModelProto:
    """A transformer encoder the size of MiniLM-L6 (6 layers, 384 wide, 12 heads), random weights, output
    token embeddings ``last_hidden_state``: the benchmark's stand-in for a real model's compute (no hub here).
    Self-attention masked by ``attention_mask``, a sigmoid-GELU feed-forward, post-layer norms."""
    rng = np.random.default_rng(seed)
    head = hidden // heads
    inits: list[onnx.TensorProto] = []

    def weight(name: str, *shape: int, scale: float = 0.05) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    const("heads_shape", np.array([0, 0, heads, head], dtype=np.int64))
    const("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    const("scale", np.array(1 / np.sqrt(head), dtype=np.float32))
    const("neg", np.array(-1e4, dtype=np.float32))
    const("one", np.array(1.0, dtype=np.float32))
    const("gelu_k", np.array(1.702, dtype=np.float32))
    const("mask_axes", np.array([1, 2], dtype=np.int64))
    nodes = [
        helper.make_node("Gather", [weight("table", vocab_size, hidden, scale=1.0), "input_ids"], ["h0"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "mask_axes"], ["mask_4d"]),  # [batch, 1, 1, tokens]
        helper.make_node("Sub", ["one", "mask_4d"], ["unmask"]),
        helper.make_node("Mul", ["unmask", "neg"], ["bias"]),
    ]
    x = "h0"
    for i in range(layers):
        p = f"l{i}_"

        def split(name: str, src: str, p: str = p, nodes: list[onnx.NodeProto] = nodes) -> str:
            nodes.append(helper.make_node("MatMul", [src, weight(p + name + "_w", hidden, hidden)], [p + name + "_m"]))
            nodes.append(helper.make_node("Reshape", [p + name + "_m", "heads_shape"], [p + name + "_r"]))
            return p + name + "_r"

        q, k, v = split("q", x), split("k", x), split("v", x)
        nodes += [
            helper.make_node("Transpose", [q], [p + "qt"], perm=[0, 2, 1, 3]),
            helper.make_node("Transpose", [k], [p + "kt"], perm=[0, 2, 3, 1]),
            helper.make_node("Transpose", [v], [p + "vt"], perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [p + "qt", p + "kt"], [p + "s"]),
            helper.make_node("Mul", [p + "s", "scale"], [p + "ss"]),
            helper.make_node("Add", [p + "ss", "bias"], [p + "sb"]),
            helper.make_node("Softmax", [p + "sb"], [p + "a"], axis=-1),
            helper.make_node("MatMul", [p + "a", p + "vt"], [p + "c"]),
            helper.make_node("Transpose", [p + "c"], [p + "ct"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + "ct", "merge_shape"], [p + "cm"]),
            helper.make_node("MatMul", [p + "cm", weight(p + "o_w", hidden, hidden)], [p + "o"]),
            helper.make_node("Add", [x, p + "o"], [p + "r1"]),
            helper.make_node("LayerNormalization", [p + "r1", weight(p + "ln1_g", hidden, scale=1.0),
                                                    weight(p + "ln1_b", hidden)], [p + "n1"], axis=-1),
            helper.make_node("MatMul", [p + "n1", weight(p + "f1_w", hidden, ffn)], [p + "f1"]),
            helper.make_node("Mul", [p + "f1", "gelu_k"], [p + "gk"]),
            helper.make_node("Sigmoid", [p + "gk"], [p + "gs"]),
            helper.make_node("Mul", [p + "f1", p + "gs"], [p + "g"]),
            helper.make_node("MatMul", [p + "g", weight(p + "f2_w", ffn, hidden)], [p + "f2"]),
            helper.make_node("Add", [p + "n1", p + "f2"], [p + "r2"]),
            helper.make_node("LayerNormalization", [p + "r2", weight(p + "ln2_g", hidden, scale=1.0),
                                                    weight(p + "ln2_b", hidden)], [p + "out"], axis=-1),
        ]
        x = p + "out"
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    graph = helper.make_graph(
        nodes, "minilm-sized",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", hidden])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="jobpipe-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_minilm_sized(directory: Path, *, max_length: int = 128) -> Path:
    """A model directory with :func:`build_encoder_graph`'s graph and the tiny tokenizer (the benchmark's)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(max_length)
    tokenizer.save(str(directory / "tokenizer.json"))
    onnx.save(build_encoder_graph(tokenizer.get_vocab_size()), str(directory / "model.onnx"))
    (directory / "embedding.json").write_text(json.dumps({"name": "minilm-sized-random", "max_length": max_length}),
                                              encoding="utf-8")
    return directory
