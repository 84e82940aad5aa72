"""Inference off the executor thread: a bounded newest-frame queue and the thread that drains it.

Subscription callbacks only `put` (never block); when the queue is full the OLDEST waiting frame
is dropped and counted, so the worker always starts on the newest frame and latency stays flat
however fast frames arrive (nvblox's pattern). The worker thread calls `process(frame)`; an
exception there is reported through `on_error` and the thread keeps going.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any


class FrameQueue:
    """Thread-safe FIFO of at most `maxsize` items that drops the oldest on overflow."""

    def __init__(self, maxsize: int = 1) -> None:
        if maxsize < 1:
            raise ValueError(f"queue_size must be >= 1, got {maxsize}")
        self._items: collections.deque = collections.deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.accepted = 0

    def put(self, item: Any) -> Any | None:
        """Add `item`; returns the item it pushed out (already counted in `dropped`) or None."""
        with self._cond:
            out = None
            if len(self._items) >= self._maxsize:
                out = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.accepted += 1
            self._cond.notify()
            return out

    def get(self, timeout: float | None = None) -> Any | None:
        """Oldest waiting item, or None after `timeout` seconds or once closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Worker:
    """A daemon thread running `process(item)` for every item of `queue` until `stop()`."""

    def __init__(
        self,
        queue: FrameQueue,
        process: Callable[[Any], None],
        on_error: Callable[[Any, BaseException], None],
        name: str = "cigocc-inference",
    ) -> None:
        self.queue = queue
        self.process = process
        self.on_error = on_error
        self.busy = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.1)
            if item is None:
                continue
            self.busy = True
            try:
                self.process(item)
            except Exception as e:  # a bad frame must not kill inference for the next ones
                self.on_error(item, e)
            finally:
                self.busy = False

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.queue.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
