"""Which log a topic's offsets count in (README): the topic's id, or the broker's incarnation.

Kafka names a topic's log by its topic id (Metadata v10+, KIP-516): a topic deleted and re-created
under the same name gets a new one. aiokafka neither sends Metadata v10 nor exposes topic ids, so
this module sends one small Metadata request of its own over the consumer's connection. A broker
without topic ids (all zeros, or no Metadata v10) is named by its cluster id instead, which the
dev stack makes fresh for every broker it starts (`service.embedded`): a memory-only broker
restarted empty is then a new log too. A broker that names neither gives `None`: the stored
offsets are trusted, and only a log ending before them is noticed (see `partitions`).

The request goes over the client's coordination connection, not the one its fetches use: a
broker answers the requests of one connection in order, so behind a fetch that waits for data
(up to `fetch_max_wait_ms`, and the embedded broker waits for most of it even with data there)
the check, made after every fetch, would wait as long.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from io import BytesIO
from typing import Any

from aiokafka.client import ConnectionGroup
from aiokafka.errors import IncompatibleBrokerVersion, KafkaConnectionError
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.metadata import MetadataRequest_v4
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

_NO_ID = uuid.UUID(int=0)


class _Uuid(AbstractType[uuid.UUID]):  # type: ignore[misc]
    @classmethod
    def encode(cls, value: uuid.UUID) -> bytes:
        return value.bytes

    @classmethod
    def decode(cls, data: BytesIO) -> uuid.UUID:
        return uuid.UUID(bytes=data.read(16))


class _MetadataResponse_v10(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class _MetadataRequest_v10(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = _MetadataResponse_v10
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class _LogsRequest(Request[MetadataRequest_v4 | _MetadataRequest_v10]):  # type: ignore[misc]
    """Metadata of some topics, never creating them; v10 when the broker has it, else v4."""

    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(
        self, request_struct_class: type[MetadataRequest_v4 | _MetadataRequest_v10]
    ) -> MetadataRequest_v4 | _MetadataRequest_v10:
        if request_struct_class is _MetadataRequest_v10:
            return _MetadataRequest_v10(
                [(_NO_ID, t, {}) for t in self.topics], False, False, False, {}
            )
        return MetadataRequest_v4(self.topics, False)


def log_id(topic_id: uuid.UUID | None, cluster_id: str | None) -> str | None:
    """The name of a topic's log: its topic id, else its broker's cluster id, else unknown."""
    if topic_id is not None and topic_id != _NO_ID:
        return f"topic:{topic_id}"
    if cluster_id:
        return f"cluster:{cluster_id}"
    return None


async def describe(
    client: Any, topics: Iterable[str]
) -> tuple[str | None, dict[str, uuid.UUID | None]]:
    """The broker's cluster id, and the topic id of each topic it knows (None: it has none), asked
    of any broker over the aiokafka `client` (an `AIOKafkaClient`, as `consumer._client`)."""
    wanted = sorted(set(topics))
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker known to ask which log the topics have")
    try:
        response = await client.send(node, _LogsRequest(wanted), group=ConnectionGroup.COORDINATION)
    except (IncompatibleBrokerVersion, NotImplementedError):
        # No Metadata v4 or later: nothing to name a log by.
        return None, {}
    ids: dict[str, uuid.UUID | None] = {}
    for topic in response.topics:
        error_code, name = topic[0], topic[1]
        if error_code == 0:
            ids[name] = topic[2] if isinstance(response, _MetadataResponse_v10) else None
    return getattr(response, "cluster_id", None), ids


async def log_ids(client: Any, topics: Iterable[str]) -> dict[str, str | None]:
    """The log of each topic (None for a topic the broker does not know)."""
    wanted = sorted(set(topics))
    if not wanted:
        return {}
    cluster_id, ids = await describe(client, wanted)
    return {t: log_id(ids[t], cluster_id) if t in ids else None for t in wanted}
