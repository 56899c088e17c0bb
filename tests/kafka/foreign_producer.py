"""Produce one record whose header key is not UTF-8, as a client other than aiokafka could.

aiokafka's producer encodes header keys itself, so this runs its pure-Python record builder
(AIOKAFKA_NO_EXTENSIONS=1) with a key object that encodes to arbitrary bytes.
Usage: python foreign_producer.py BOOTSTRAP TOPIC PARTITION HEX_KEY VALUE_FILE;
prints the record's offset.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiokafka import AIOKafkaProducer


class RawKey(str):
    raw = b""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


async def main(bootstrap: str, topic: str, partition: int, key: bytes, value: bytes) -> None:
    header = RawKey("raw")
    header.raw = key
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send(topic, value, partition=partition, headers=[(header, b"1")])
        print((await sent).offset)
    finally:
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1],
            sys.argv[2],
            int(sys.argv[3]),
            bytes.fromhex(sys.argv[4]),
            Path(sys.argv[5]).read_bytes(),
        )
    )
