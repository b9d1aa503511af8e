"""The vector index's readers-writer lock lets searches in between a writer's chunks, and
still lets a writer in past a stream of searches."""

from __future__ import annotations

import threading
import time

from engram_cli.engine.rwlock import RWLock


def test_a_reader_goes_in_between_the_chunks_of_a_writer_that_keeps_writing() -> None:
    lock, chunks, started = RWLock(), [0], threading.Event()

    def writer() -> None:  # as the merger: chunk after chunk, the lock taken for each
        for _ in range(20):
            with lock.write():
                started.set()
                time.sleep(0.01)
                chunks[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait()
    with lock.read():
        entered_at = chunks[0]
    thread.join()
    assert entered_at < 10, f"the reader waited for {entered_at} of the writer's 20 chunks"


def test_a_writer_gets_in_past_readers_that_keep_coming() -> None:
    lock, stop, wrote = RWLock(), threading.Event(), threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with lock.read():
                time.sleep(0.005)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for r in readers:
        r.start()
    time.sleep(0.05)

    def writer() -> None:
        with lock.write():
            wrote.set()

    w = threading.Thread(target=writer)
    w.start()
    try:
        assert wrote.wait(5.0), "the writer never got in"
    finally:
        stop.set()
        w.join()
        for r in readers:
            r.join()


def test_readers_share_and_a_writer_is_alone() -> None:
    lock, inside, most, writing, broken = RWLock(), [0], [0], [], []
    guard = threading.Lock()

    def reader() -> None:
        for _ in range(50):
            with lock.read():
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    if writing:
                        broken.append("a reader beside the writer")
                time.sleep(0.001)
                with guard:
                    inside[0] -= 1

    def writer() -> None:
        for _ in range(50):
            with lock.write():
                with guard:
                    if inside[0]:
                        broken.append("the writer beside a reader")
                    writing.append(1)
                time.sleep(0.0005)
                with guard:
                    writing.pop()

    threads = [threading.Thread(target=reader) for _ in range(4)] + [
        threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not broken, broken[:3]
    assert most[0] >= 2  # readers did share it
