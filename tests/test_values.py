"""values.Value: what the cached recall's value classes keep from the dataclasses they were
(equality, hashing, a repr, replace(), immutability), without importing dataclasses."""

from __future__ import annotations

import copy
import pickle

import pytest

from engram_cli.client.cache import CachedAnswer, CachePolicy, CacheStats
from engram_cli.client.recall import Answer, RecallOptions
from engram_cli.client.settings import CLIENT_SPEC_BY_KEY, ClientSettings
from engram_cli.config import Connection, TlsOptions
from engram_cli.engine.settings import SPEC_BY_KEY


def test_a_frozen_value_compares_hashes_and_shows_its_fields() -> None:
    a = Connection("h:1", "notes", tls=TlsOptions(ca_cert="ca.pem"))
    b = Connection(server="h:1", space="notes", tls=TlsOptions("ca.pem"))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Connection("h:2", "notes") and a != ("h:1", "notes")
    assert repr(TlsOptions("ca.pem")) == ("TlsOptions(ca_cert='ca.pem', client_cert='', "
                                          "client_key='', server_name='')")


def test_a_frozen_value_is_immutable_and_replace_makes_a_changed_copy() -> None:
    conn = Connection("h:1")
    with pytest.raises(AttributeError, match="immutable"):
        conn.server = "h:2"
    with pytest.raises(AttributeError):
        del conn.space
    other = conn.replace(space="notes", autostart=False)
    assert (other.server, other.space, other.autostart) == ("h:1", "notes", False)
    assert conn == Connection("h:1")
    with pytest.raises(TypeError):
        conn.replace(nope=1)


def test_copies_and_pickles_are_equal() -> None:
    policy = CachePolicy(ttl_s=5.0)
    assert copy.copy(policy) == policy == pickle.loads(pickle.dumps(policy))
    assert copy.deepcopy(RecallOptions(tags=("a",))) == RecallOptions(tags=("a",))


def test_a_subclass_has_its_bases_fields_too() -> None:
    spec = CLIENT_SPEC_BY_KEY["pool"]
    assert spec.replace(flag="--workers").flag == "--workers"
    assert spec.replace(flag="--workers").max == spec.max
    assert spec == spec.replace() and spec != spec.replace(env="OTHER")
    assert SPEC_BY_KEY["max_hops"].replace(max=5).max == 5


def test_origins_take_no_part_in_comparisons() -> None:
    # As dataclasses' field(compare=False, repr=False) had it.
    a = ClientSettings(pool=3, origins={"pool": "flag"})
    b = ClientSettings(pool=3, origins={"pool": "env"})
    assert a == b and hash(a) == hash(b) and "origins" not in repr(a)
    assert a.replace(pool=4).origins == {"pool": "flag"}
    assert ClientSettings().origins == {}


def test_a_mutable_value_compares_but_does_not_hash() -> None:
    a, b = Answer("cue"), Answer("cue")
    assert a == b and a.results == [] and a.results is not b.results
    a.cached = True
    assert a != b
    stats = CacheStats("f")
    stats.hits += 1
    assert stats.as_dict()["hits"] == 1 and stats.spaces == {}
    with pytest.raises(TypeError):
        hash(CachedAnswer([], None, 0.0, 0.0))
