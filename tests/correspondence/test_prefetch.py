import threading
import time

from objssl.correspondence.prefetch import prefetch


def test_results_in_order_from_several_threads_bounded_ahead():
    names, started = set(), []

    def slow(i):
        started.append(i)
        names.add(threading.current_thread().name)
        time.sleep(0.01 * (i % 3))
        return i * i

    got = []
    for r in prefetch(slow, range(20), 3):
        got.append(r)
        assert len(started) <= len(got) + 2 * 3  # never more than 2 * workers ahead
    assert got == [i * i for i in range(20)] and len(names) > 1
    assert list(prefetch(lambda x: -x, [1, 2], 1)) == [-1, -2]
