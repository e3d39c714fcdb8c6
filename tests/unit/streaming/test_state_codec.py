"""The contact table's codec: the memory store keeps states with shared values; a read-through
store (RocksDB decodes on every read) gets the same states, decoded without the sharing."""

from __future__ import annotations

import pytest
from faust.serializers import codecs

from pipeline.consumers.partition_state import UndecodableState
from pipeline.state_machine import ContactState, encode_state
from pipeline.streaming.faust_state import ContactStateValue, ReadThroughStateValue, value_type_for


def state(contact: str) -> ContactState:
    return ContactState(contact=contact, identified=True, clock=1_767_225_600_000_000,
                        score_at=1_767_225_600_000_000, seen=b"12345678")


def test_the_memory_store_shares_values_and_rocksdb_reads_without_sharing() -> None:
    assert value_type_for("memory") is ContactStateValue
    assert value_type_for("rocksdb") is ReadThroughStateValue
    data = encode_state(state("c1"))
    shared = codecs.get_codec(ContactStateValue._options.serializer).loads(data)
    plain = codecs.get_codec(ReadThroughStateValue._options.serializer).loads(data)
    assert shared == plain == state("c1")
    assert shared.clock is shared.score_at  # equal times share one object in the kept state
    assert plain.clock is not plain.score_at  # decoded as read, nothing shared
    assert encode_state(shared) == encode_state(plain) == data


@pytest.mark.parametrize("value_type", [ContactStateValue, ReadThroughStateValue])
def test_bytes_that_do_not_decode_never_stop_the_changelog_recovery(value_type: type[ContactStateValue]) -> None:
    loaded = codecs.get_codec(value_type._options.serializer).loads(b"\xc1")
    assert isinstance(loaded, UndecodableState) and loaded.data == b"\xc1"
