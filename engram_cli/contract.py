"""Names on the wire that our client and our server must spell alike: services, request and
trailing metadata keys, the reserved metadata field and its values.

Both sides import them from here. Plain strings only: this module imports neither
protobuf nor grpc, so that the cache-hit path and the engine can use it for free
(tests/test_client_settings.py checks the service names against the descriptors).
"""

from __future__ import annotations

# Services. engram.v1 is the contract shared with upstream Engram; the extension service is
# ours (batch writes, settings, server info) and other servers answer it UNIMPLEMENTED.
ENGRAM_SERVICE = "engram.v1.EngramService"
EXTENSION_SERVICE = "engram_cli.ext.v1.ExtensionService"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_PACKAGE = "grpc.reflection"
# The names our health service reports SERVING: "" is the server as a whole.
HEALTH_CHECKED = ("", ENGRAM_SERVICE, EXTENSION_SERVICE)

# Request metadata: the API key, as `authorization: Bearer KEY`.
AUTHORIZATION_KEY = "authorization"
BEARER_SCHEME = "Bearer"

# Request metadata: per-request spreading settings that engram.v1's Cue has no field for.
# Our server reads them; other servers ignore them.
MAX_HOPS_KEY = "engram-max-hops"
THRESHOLD_KEY = "engram-activation-threshold"
# hybrid | lexical | vector: which indexes seed a text cue (our server; others ignore it)
RECALL_MODE_KEY = "engram-recall-mode"
RECALL_MODES = ("hybrid", "lexical", "vector")  # the first is the default

# Trailing metadata on a Recall whose answer may be incomplete, comma-separated:
# `budget` (the recall time budget ran out; the best found so far) and `index-behind=N`
# (the vector index had about N changes still to take in). A client should not cache such
# an answer. Other servers never send it.
RECALL_PARTIAL_KEY = "engram-recall-partial"
PARTIAL_BUDGET = "budget"
PARTIAL_INDEX_BEHIND = "index-behind"


def partial_reasons(budget_exhausted: bool, index_behind: int) -> str:
    """The RECALL_PARTIAL_KEY value for an answer ("" when it is complete)."""
    parts = [PARTIAL_BUDGET] if budget_exhausted else []
    if index_behind > 0:
        parts.append(f"{PARTIAL_INDEX_BEHIND}={index_behind}")
    return ",".join(parts)


def partial_text(value: str) -> str:
    """A RECALL_PARTIAL_KEY value in words, for users ("" when complete)."""
    words = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, n = part.partition("=")
        if name == PARTIAL_BUDGET:
            words.append("the server's recall time budget ran out (recall_budget_ms); "
                         "this is the best it found in time")
        elif name == PARTIAL_INDEX_BEHIND:
            words.append(f"the server's vector index is still taking in about {n} "
                         "changes; the answer may change once it has")
        else:
            words.append(part)
    return "; ".join(words)


# Upstream Engram refuses a memory (and an embedding cue) whose vector has another length.
UPSTREAM_EMBEDDING_DIM = 768

# Trailing metadata on RESOURCE_EXHAUSTED: milliseconds to wait before trying again.
RETRY_AFTER_KEY = "retry-after-ms"
# How a RESOURCE_EXHAUSTED for a full store (disk full, or max_store_bytes reached) begins:
# waiting helps once space is freed; smaller batches do not.
STORE_FULL_DETAIL = "the store is full"

# engram.v1's Memory has no consolidation state; our server reports it in this reserved
# metadata key as the lower-case state name (upstream servers leave it out).
STATE_KEY = "engram.state"
STATE_CONSOLIDATED = "consolidated"
# On a Recall with trace_activation, which index made each returned memory a seed, in
# this reserved metadata key (engram.v1's ActivationTrace has no field for it): lexical
# (the full-text index), vector (the vector index), both, context (a context cue), or
# spread (not a seed: reached along associations). Other servers leave it out.
SEED_KEY = "engram.seed"


def method_path(service: str, method: str) -> str:
    """The HTTP/2 path of an RPC, as gRPC routes it: `/package.Service/Method`."""
    return f"/{service}/{method}"


def authorization(api_key: str) -> str:
    """The `authorization` metadata value that carries an API key."""
    return f"{BEARER_SCHEME} {api_key}"


def bearer_key(value: str) -> str:
    """The API key in an `authorization` value, or "" when it is not a Bearer credential.
    HTTP auth schemes are case-insensitive (RFC 9110 11.1), so `bearer KEY` counts too."""
    scheme, _, key = value.strip().partition(" ")
    return key.strip() if scheme.lower() == BEARER_SCHEME.lower() else ""


def key_error(key: str) -> str:
    """Why `key` cannot be an API key ("" when it can): a client sends it in gRPC metadata
    as `authorization: Bearer KEY`, which carries printable ASCII, and an empty key would
    be no key at all."""
    if not key:
        return "an empty key (it would let every client in)"
    if not all("!" <= c <= "~" for c in key):
        return "a key is printable ASCII without spaces (gRPC metadata carries no other)"
    return ""


def as_text(value: str) -> str:
    """`value` as a protobuf string, a JSON line or a terminal can carry it: bytes that were
    not UTF-8 (which Python hands on from argv, the environment, stdin and file names as
    lone surrogates) become U+FFFD. `value` itself when it is UTF-8 text."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value
