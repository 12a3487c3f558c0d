"""Bakes a public ONNX embedding model into the GPU image (the ``model`` stage of Dockerfile.gpu).

``python fetch_model.py TARGET`` reads ``EMBEDDING_MODEL_REPO`` (a Hugging Face repo id; empty: bake
nothing), ``EMBEDDING_MODEL_REVISION`` (branch, tag or commit; a commit makes the build reproducible) and
``EMBEDDING_MODEL_ONNX_FILE`` (the ONNX export's path in the repo) and writes the model directory the
worker loads (``jobadapters.embeddings``): ``TARGET/model.onnx``, ``TARGET/tokenizer.json`` and
``TARGET/embedding.json`` (``{"name": <repo>, "revision": <revision>}``). TARGET always exists afterwards,
empty when no repo is given, so the final stage can copy it either way.

Standard library only at import (``huggingface_hub`` is imported when a download is due), so the tests can
drive it with a stand-in downloader.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "embedding.json"

Download = Callable[..., str]  # huggingface_hub.hf_hub_download's shape: (repo_id=, filename=, revision=, local_dir=) -> path


def fetch(target: Path, *, repo: str, revision: str = "main", onnx_file: str = "onnx/model.onnx",
          download: Download | None = None) -> list[Path]:
    """Writes the model directory into ``target``; returns the files written (none when ``repo`` is empty)."""
    target.mkdir(parents=True, exist_ok=True)
    if not repo:
        return []
    if download is None:
        from huggingface_hub import hf_hub_download  # only when a model is baked

        download = hf_hub_download
    staging = target / ".download"
    written = []
    try:
        for source, name in ((onnx_file, MODEL_FILE), (TOKENIZER_FILE, TOKENIZER_FILE)):
            path = download(repo_id=repo, filename=source, revision=revision, local_dir=str(staging))
            destination = target / name
            shutil.move(path, destination)
            written.append(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    meta = target / META_FILE
    meta.write_text(json.dumps({"name": repo, "revision": revision}) + "\n", encoding="utf-8")
    written.append(meta)
    return written


def main(argv: list[str], download: Download | None = None) -> int:
    if len(argv) != 2:
        print("usage: fetch_model.py TARGET_DIR (model from EMBEDDING_MODEL_REPO / _REVISION / _ONNX_FILE)", file=sys.stderr)
        return 2
    repo = os.environ.get("EMBEDDING_MODEL_REPO", "").strip()
    revision = os.environ.get("EMBEDDING_MODEL_REVISION", "").strip() or "main"
    onnx_file = os.environ.get("EMBEDDING_MODEL_ONNX_FILE", "").strip() or "onnx/model.onnx"
    written = fetch(Path(argv[1]), repo=repo, revision=revision, onnx_file=onnx_file, download=download)
    if written:
        print(f"baked {repo}@{revision} ({onnx_file}) into {argv[1]}: {', '.join(p.name for p in written)}")
    else:
        print("EMBEDDING_MODEL_REPO is empty: no model baked (the worker needs EMBEDDING_MODEL_URI then)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
