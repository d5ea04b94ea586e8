"""The SQLite outbox: ordering, cursors, dead letters, retention and the size cap."""

import json
import time

import pytest

from edgeinfer.store.sqlite import EventRow, Store, StoredEvent


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "edgeinfer.db")
    yield s
    s.close()


def events(n, camera="a", start_ns=0):
    return [EventRow(camera, start_ns + i, json.dumps({"camera": camera, "seq": i})) for i in range(n)]


def test_events_read_back_in_order_with_filters(store):
    store.append(events(3, "a", start_ns=10), [])
    store.append(events(2, "b", start_ns=20), [])
    assert [e.doc["seq"] for e in store.events(camera="a")] == [0, 1, 2]
    assert len(store.events(since_ns=20)) == 2
    assert [e.doc["seq"] for e in store.events(limit=2, newest_first=True)] == [1, 0]


def test_events_read_back_as_typed_rows(store):
    store.append(events(2, "b", start_ns=20), [])
    first, second = store.events()
    assert first == StoredEvent(1, "b", 20, '{"camera": "b", "seq": 0}', {"camera": "b", "seq": 0})
    assert (second.id, second.camera, second.ts_ns, second.doc["seq"]) == (2, "b", 21, 1)
    with pytest.raises(AttributeError):
        first.camera = "c"


def test_cursor_delivers_everything_once_in_order(store):
    store.register_sink("mqtt", "events")
    store.append(events(5), [])
    first = store.pending("mqtt", "events", 3)
    assert [r.id for r in first] == [1, 2, 3] and first[0].camera == "a"
    store.ack("mqtt", "events", first[-1].id)
    assert store.backlog("mqtt", "events") == 2
    assert [r.id for r in store.pending("mqtt", "events", 10)] == [4, 5]
    store.ack("mqtt", "events", 2)  # a late, smaller ack never moves the cursor back
    assert store.cursor("mqtt", "events") == 3


def test_cursor_survives_reopen(tmp_path):
    s = Store(tmp_path / "db")
    s.append([], ["m f=1i 1", "m f=2i 2"])
    s.ack("influxdb", "points", 1)
    s.close()
    s = Store(tmp_path / "db")
    assert [r.body for r in s.pending("influxdb", "points", 10)] == ["m f=2i 2"]
    s.close()


def test_dead_letters_keep_the_server_message(store):
    store.append([], ["bad line", "good f=1i 1"])
    rows = store.pending("influxdb", "points", 1)
    store.dead_letter("influxdb", "points", rows, "400: unable to parse 'bad line'")
    assert store.dead_letters("influxdb") == [("influxdb", "bad line", "400: unable to parse 'bad line'")]
    assert store.counters()["dead_letters.influxdb"] == 1


def test_retention_prunes_old_rows_and_counts_undelivered(store):
    store.register_sink("mqtt", "events")
    now = time.time_ns()
    old = now - int(8 * 86400 * 1e9)
    store.append(events(4, start_ns=old), [(old, "m f=1i 1")])
    store.append(events(2, start_ns=now), [(now, "m f=1i 2")])
    store.ack("mqtt", "events", 1)  # one old event was delivered, three were not
    result = store.prune(now)
    assert result.deleted == 5  # 4 old events + 1 old point
    assert store.count("events") == 2 and store.count("points") == 1
    assert store.counters()["dropped_undelivered.events"] == 3


def test_size_cap_drops_oldest_rows_first(tmp_path):
    """The cap holds after every commit (db + WAL + index + reserve), not only after the periodic prune:
    before, the database and a WAL of up to 4 MB grew past max_bytes for up to 30 s between prunes."""
    s = Store(tmp_path / "db", max_bytes=1 << 20)
    body = "x" * 2000
    now = time.time_ns()
    largest = 0
    for i in range(20):
        s.append(
            [
                EventRow("a", now + i * 100 + k, json.dumps({"seq": i * 100 + k, "pad": body}))
                for k in range(100)
            ]
        )
        largest = max(largest, s.size_bytes())
    assert largest <= 1 << 20  # 4 MB of rows went through a 1 MiB store
    result = s.prune(now)  # reports what the cap pruned after the commits
    assert result.deleted > 0
    assert s.size_bytes() <= 1 << 20
    remaining = [e.doc["seq"] for e in s.events()]
    assert remaining == list(range(2000 - len(remaining), 2000))  # newest kept, contiguous
    assert s.counters()["pruned.events"] == result.deleted == 2000 - len(remaining)
    s.close()


def test_sqlite_failures_become_store_errors(store):
    from edgeinfer.errors import StoreError

    store._db.execute("DROP TABLE points")  # what a corrupted or foreign database file looks like
    with pytest.raises(StoreError, match="no such table: points"):
        store.append([], ["m f=1i 1"])
    store.append(events(1), [])  # the lock was released and the store still works
    assert store.count("events") == 1


def test_next_seqs_continue_after_the_highest_stored_seq_per_camera(tmp_path):
    s = Store(tmp_path / "db")
    assert s.next_seqs() == {}
    rows = [EventRow(cam, i, json.dumps({"camera": cam, "seq": seq}), seq) for i, (cam, seq) in
            enumerate([("a", 0), ("a", 7), ("b", 3), ("a", 5)])]  # fmt: skip
    s.append(rows)
    assert s.next_seqs() == {"a": 8, "b": 4}
    s.close()
    s = Store(tmp_path / "db")
    assert s.next_seqs() == {"a": 8, "b": 4}  # survives a restart
    s.prune(time.time_ns() + int(30 * 86400 * 1e9))  # retention removes every event...
    assert s.count("events") == 0
    assert s.next_seqs() == {"a": 8, "b": 4}  # ...not the highest seq
    s.close()


def test_next_seqs_of_a_store_written_before_the_seq_counter_existed(tmp_path):
    s = Store(tmp_path / "db")
    s.append(events(5, "a") + events(2, "b"))  # rows without a seq: what older versions stored
    assert s.next_seqs() == {"a": 5, "b": 2}  # read from the events' JSON once...
    assert s.counters()["seq.a"] == 4  # ...and kept as counters from then on
    s.close()
