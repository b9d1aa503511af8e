"""The write calls for servers without our batch RPC (upstream Engram): a batch sent as
one StreamingRemember, or as unary Remember calls (against several upstream endpoints: a
cluster proxies unary calls to the space's owner, not streams). Both answer the same way:
the answers in request order up to the first failure, and that failure, so the bulk sender
settles either alike (client/bulk.py). Requests are serialized RememberRequest bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

from engram_cli.client.pool import Lane

Done = Callable[[list[Any], BaseException | None], None]


def stream_call(lane: Lane, requests: list[bytes], metadata: Sequence[tuple[str, str]],
                timeout: float | None, done: Done) -> None:
    answers: list[Any] = []
    error: BaseException | None = None
    try:
        for answer in lane.streaming_remember(iter(requests), metadata=metadata,
                                              timeout=timeout):
            answers.append(answer)
    except grpc.RpcError as err:
        error = err
    except Exception as exc:  # never lose a completion: the caller waits for it
        error = exc
    done(answers, error)


def unary_calls(lane: Lane, requests: list[bytes], metadata: Sequence[tuple[str, str]],
                timeout: float | None, done: Done) -> None:
    """All of them at once (each call is balanced on its own), answered in order up to
    the first failure; what follows a failure is sent again by the caller, which is
    safe: every memory carries its id."""
    answers: list[Any] = []
    error: BaseException | None = None
    futures = []
    try:
        futures = [lane.remember.future(r, metadata=metadata, timeout=timeout)
                   for r in requests]
        for fut in futures:
            answers.append(fut.result())
    except grpc.RpcError as err:
        error = err
    except Exception as exc:
        error = exc
    finally:
        for fut in futures:
            fut.cancel()  # a no-op for the answered ones
    done(answers, error)
