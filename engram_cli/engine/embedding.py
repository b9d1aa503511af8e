"""Embedding models: named providers behind one small interface.

A model has a `name`, a `dim` and `embed(texts)`, which answers an (n, dim) float32 array of
unit rows (a text with nothing to embed, such as an empty one, gets a row of zeros: store
no vector for it). Models are chosen by name from MODELS, like llm's embedding models: the
name is what a vector collection records, so vectors of two models never mix.

The default, WordLlama's `l2_supercat` at 256 dimensions, ships inside the `wordllama` wheel
and is loaded from the package's own folder with downloads disabled, so it works on a
machine with no network. `none` means no model. numpy and wordllama are imported only when
a model is loaded.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engram_cli.errors import EngramError, SettingsError

if TYPE_CHECKING:
    import numpy as np

NONE = "none"
DEFAULT_MODEL = "wordllama-l2-supercat-256"

# A text's embedding is the mean of its token vectors, so a very long text says little more
# after its first few hundred tokens; the cap bounds a batch's scratch memory (tokens x dim
# floats per text) whatever a memory holds.
MAX_TOKENS = 512
# Tokenizing a megabyte of text takes seconds even when all but its first tokens are cut;
# no token is longer than this many characters on average, so the cut is the same.
MAX_CHARS = MAX_TOKENS * 16
# Texts per tokenizer/numpy call: large enough to amortise the per-call cost, small enough
# that the (batch, tokens, dim) scratch array stays a few MB.
BATCH = 128


class ModelUnavailable(EngramError):
    """The embedding model cannot be loaded (its package or files are missing)."""


class EmbeddingModel(Protocol):
    """What the engine needs of a model."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length (zeros: nothing to embed)."""
        ...


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: what it is called, its dimension, and how to load it."""

    name: str
    dim: int
    description: str
    load: Callable[[], EmbeddingModel]
    # Trained so that a prefix of a vector is a good smaller vector (Matryoshka
    # representation learning): it may be truncated to fewer dimensions.
    matryoshka: bool = False


class WordLlamaModel:
    """WordLlama static token embeddings, mean-pooled: no network, no torch, tens of
    microseconds a text."""

    def __init__(self, config: str = "l2_supercat", dim: int = 256,
                 name: str = DEFAULT_MODEL) -> None:
        self.name = name
        self.dim = dim
        self._model = _load_wordllama(config, dim)
        # WordLlama's tokenizer, set up for _pooled (WordLlama's own embed, which needs
        # the tokenizer's padding and normalizer, is not used; a copy would cost 40 MB):
        # WordLlama turns truncation off, and a capped length keeps one huge memory from
        # padding a whole batch to its length; padding is done in _pooled from the token
        # counts, because the tokenizer's padding and the per-text lists of ids and mask
        # it builds cost more than the pooling itself.
        tokenizer = self._model.tokenizer
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        _no_word_cache(tokenizer)
        # Llama's normalizer (a "▁" before the text, "▁" for each space) costs a quarter
        # of the tokenizer's instructions, most of it keeping each character's offsets;
        # done here with str.replace it gives the same ids.
        normalizer = tokenizer.normalizer
        self._metaspace = normalizer is not None and json.loads(
            normalizer.__getstate__()) == _METASPACE
        if self._metaspace:
            tokenizer.normalizer = None
        # encode_batch_fast gives the same ids as encode_batch without tracking each
        # token's character offsets, which nothing here reads: a third of the tokenizing.
        self._encode = tokenizer.encode_batch_fast

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        texts = [t[:MAX_CHARS] for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # A batch is padded to its longest text: grouping texts of similar length makes
        # the padding (wasted gathers and sums) small. Character length is a cheap proxy.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            out[idx] = self._pooled([texts[i] for i in idx])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _pooled(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if self._metaspace:
            texts = ["\u2581" + t.replace(" ", "\u2581") if t else t for t in texts]
        encoded = self._encode(texts, add_special_tokens=False)
        counts = np.fromiter(map(len, encoded), dtype=np.intp, count=len(encoded))
        total = int(counts.sum())
        if not total:
            return np.zeros((len(texts), self.dim), dtype=np.float32)
        flat = np.fromiter(chain.from_iterable(e.ids for e in encoded), dtype=np.int32,
                           count=total)
        table = self._model.embedding
        np.clip(flat, 0, table.shape[0] - 1, out=flat)
        # (texts, longest) ids and mask, padded here: the batch's texts are of similar
        # length, so the padding (gathered and multiplied by zero) is small.
        mask = np.arange(int(counts.max())) < counts[:, None]
        ids = np.zeros(mask.shape, dtype=np.int32)
        ids[mask] = flat
        summed = np.einsum("btd,bt->bd", table[ids], mask.astype(np.float32),
                           optimize=False)
        sizes = counts[:, None].astype(np.float32)
        np.divide(summed, sizes, out=summed, where=sizes > 0)
        pooled: np.ndarray = summed.astype(np.float32, copy=False)
        return pooled


# The normalizer of Llama's tokenizer (WordLlama's): what WordLlamaModel does itself.
_METASPACE = {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "\u2581"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}


def _no_word_cache(tokenizer: Any) -> None:
    """Turn off the tokenizer's cache of split words, which is bounded in entries, not bytes.

    tokenizers' BPE model remembers how it split each word, up to 10,000 words of up to 256
    characters. This tokenizer has no pre-tokenizer, so its "word" is the whole text: every
    memory shorter than 256 characters gets an entry of ~8 KB (its symbols), and a server
    that embeds a stream of distinct memories holds ~160 MB of native memory that
    malloc_trim cannot give back. A text repeats too rarely for the cache to pay (measured:
    no difference in embedding time), and recall caches its cue vectors itself.
    """
    resize = getattr(tokenizer.model, "_resize_cache", None)
    if resize is not None:  # tokenizers >= 0.20
        resize(0)


def _load_wordllama(config: str, dim: int) -> Any:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama
    except ImportError as exc:
        raise ModelUnavailable(
            "the embedding model needs the wordllama package",
            'install it (pip install wordllama) or set embedding_model = "none"') from exc
    finally:
        # wordllama's inference module calls logging.basicConfig() on import, which would
        # take over the root logger of whatever process embeds; put it back.
        root.handlers[:] = handlers
        root.setLevel(level)
    folder = Path(wordllama.__file__).parent
    try:
        # Downloads off, and the package folder as the cache: wordllama 0.4 looks for the
        # shipped tokenizer under <cache_dir>/tokenizers, not where the wheel puts it.
        return wordllama.WordLlama.load(config=config, dim=dim, cache_dir=folder,
                                        disable_download=True)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise ModelUnavailable(
            f"cannot load the WordLlama model {config!r} ({dim} dimensions): {exc}",
            "reinstall wordllama, whose wheel ships this model") from exc


MODELS: dict[str, ModelInfo] = {
    DEFAULT_MODEL: ModelInfo(
        DEFAULT_MODEL, 256,
        "WordLlama l2_supercat, 256 dimensions; ships in the wordllama wheel, works offline",
        lambda: WordLlamaModel("l2_supercat", 256, DEFAULT_MODEL), matryoshka=True),
}

_loaded: dict[str, EmbeddingModel] = {}
_lock = threading.Lock()


def model_names() -> list[str]:
    """Every name `embedding_model` accepts, `none` first."""
    return [NONE, *MODELS]


def model_info(name: str) -> ModelInfo | None:
    """The registered model called `name`; None for `none`. Loads nothing."""
    if name == NONE:
        return None
    try:
        return MODELS[name]
    except KeyError:
        raise SettingsError(
            f"embedding_model: unknown model {name!r}",
            f"choose one of: {', '.join(model_names())}") from None


def load_model(name: str) -> EmbeddingModel | None:
    """The model called `name`, loaded once per process and shared; None for `none`.

    A loaded model is safe to call from several threads (it holds no per-call state)."""
    info = model_info(name)
    if info is None:
        return None
    with _lock:
        model = _loaded.get(name)
        if model is None:
            model = _loaded[name] = info.load()
        return model
