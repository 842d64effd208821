"""The `counter` resource of the `counters` interface (componentize-py looks for it in a module
named after the interface)."""

from wit_world.exports import counters


class Counter(counters.Counter):
    def __init__(self, start):
        self._next = start

    def next(self):
        n = self._next
        self._next = (n + 1) & 0xFFFFFFFF
        return n
