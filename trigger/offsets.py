"""Which input offsets may be committed: per partition, the contiguous prefix of finished ones.

Records of one partition finish out of order (different keys run concurrently), but a committed
offset says that everything before it is done. So the commit point only moves past an offset
once it and every offset read before it have finished.

>>> partition = PartitionOffsets("requests", 0)
>>> for offset in (10, 11, 12):
...     partition.read(offset)
>>> partition.finish(11), partition.commit_offset
(False, None)
>>> partition.finish(10), partition.commit_offset
(True, 12)
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """One assigned partition; a new object each time the partition is assigned."""

    __slots__ = ("_finished", "_open", "commit_offset", "partition", "revoked", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.revoked = False
        # The next offset to commit: all offsets read before it have finished.
        self.commit_offset: int | None = None
        self._open: deque[int] = deque()  # offsets read and not yet committable, in order
        self._finished: set[int] = set()  # finished, waiting for an earlier one

    def read(self, offset: int) -> None:
        self._open.append(offset)

    def finish(self, offset: int) -> bool:
        """Marks `offset` finished; True when the commit point moved."""
        self._finished.add(offset)
        moved = False
        while self._open and self._open[0] in self._finished:
            done = self._open.popleft()
            self._finished.discard(done)
            self.commit_offset = done + 1
            moved = True
        return moved

    @property
    def open_records(self) -> int:
        return len(self._open)
