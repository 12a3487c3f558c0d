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
