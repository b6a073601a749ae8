"""Request ids the logger makes up: random version 4 UUIDs, never repeated, even across fork."""

from __future__ import annotations

import os
import uuid

from logger.sidecar.exchange import new_request_id


def test_request_ids_are_unique_version_4_uuids() -> None:
    ids = [new_request_id() for _ in range(2000)]  # several batches of random bytes

    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text for text in ids)


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    new_request_id()  # the parent now holds a batch of unused random bytes
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write_end, new_request_id().encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(child, 0)

    assert child_id != new_request_id()
