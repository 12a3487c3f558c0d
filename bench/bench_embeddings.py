"""Benchmark of ``embeddings.encode``: texts per second through the real executor (tokenize, batch by length,
ONNX Runtime, pool, normalise, write the .npy), on every execution provider this machine's ONNX Runtime has.

    python -m bench.bench_embeddings [--texts 1024] [--tokens 128] [--model-dir DIR]

Models: ``--model-dir`` (a real model directory: model.onnx + tokenizer.json) if given; otherwise a
MiniLM-L6-sized encoder with random weights built offline (``local.tiny_embedder.build_minilm_sized``:
6 layers, 384 wide, the same compute as the real model, meaningless vectors) and the tiny test model.
Each run first warms the session with one small job. One JSON line per (model, provider); it never fails
a build. On a GPU machine (onnxruntime-gpu installed) the CUDA provider is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import onnxruntime as ort

from jobadapters.embeddings import CPU, CUDA, EmbeddingsExecutor
from jobadapters.settings import EmbeddingSettings
from jobcore.tasks import CATALOGUE, RunContext

SPEC = CATALOGUE["embeddings.encode"]
_WORDS = ("the invoice worker queue vector model batch lambda fargate gpu text number due days spot instance "
          "price token embedding encode decode request response cold start").split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=128, help="about this many tokens per text")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model-dir", type=Path, default=None)
    return parser.parse_args(argv)


def texts(count: int, tokens: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(tokens // 2, tokens))) for _ in range(count)]


def measure(directory: Path, provider: str, corpus: list[str], batch_size: int) -> dict[str, Any]:
    executor = EmbeddingsExecutor(EmbeddingSettings(model_dir=str(directory)),
                                  providers=[provider, CPU] if provider != CPU else [CPU])
    ctx = RunContext(llm=None, model_id="unused")  # type: ignore[arg-type]  # no model calls
    executor.run(SPEC.validate({"texts": corpus[:16], "batch_size": batch_size}), ctx)  # warm-up
    started = time.perf_counter()
    result = executor.run(SPEC.validate({"texts": corpus, "batch_size": batch_size}), ctx)
    elapsed = time.perf_counter() - started
    output = result.output
    return {
        "model": output["model"], "provider": output["provider"], "texts": output["count"], "dimension": output["dimension"],
        "tokens_per_text": round(output["tokens"] / output["count"], 1), "batches": output["batches"],
        "seconds": round(elapsed, 3), "texts_per_s": round(output["count"] / elapsed, 1),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    corpus = texts(args.texts, args.tokens)
    providers = [p for p in (CUDA, CPU) if p in ort.get_available_providers()]
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as scratch:
        if args.model_dir is not None:
            models = [args.model_dir]
        else:
            from local import tiny_embedder

            models = [tiny_embedder.build_minilm_sized(Path(scratch) / "minilm-sized", max_length=args.tokens),
                      tiny_embedder.build(Path(scratch) / "tiny", max_length=args.tokens)]
        for directory in models:
            for provider in providers:
                print(json.dumps(measure(directory, provider, corpus, args.batch_size)), flush=True)


if __name__ == "__main__":
    main()
