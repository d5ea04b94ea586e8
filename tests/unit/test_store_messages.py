"""The store's ``messages`` stream (tracking lifecycle and retained counts for MQTT) and the boot counter
that prefixes track ids."""

from __future__ import annotations

from edgeinfer.store.sqlite import MessageRow, Store


def test_messages_keep_topic_retain_and_order_and_have_their_own_cursor(tmp_path):
    store = Store(tmp_path / "edgeinfer.db")
    store.register_sink("mqtt", "messages")
    store.append(
        messages=[
            MessageRow("dock/objects", '{"type":"new"}', 1),
            MessageRow("dock/all/circle/count", "1", 2, retain=True),
        ]
    )
    rows = store.pending("mqtt", "messages", 10)
    assert [(r.topic, r.body, r.retain) for r in rows] == [
        ("dock/objects", '{"type":"new"}', False),
        ("dock/all/circle/count", "1", True),
    ]
    store.ack("mqtt", "messages", rows[0].id)
    assert store.backlog("mqtt", "messages") == 1
    assert store.backlog("mqtt", "events") == 0  # the events cursor is another one
    assert store.count("events") == 0
    store.close()


def test_retention_prunes_messages_too(tmp_path):
    store = Store(tmp_path / "edgeinfer.db", retention_s=10)
    store.append(messages=[MessageRow("a/objects", "{}", 1_000), MessageRow("a/objects", "{}", 2 * 10**12)])
    result = store.prune(now_ns=10**12)
    assert result.deleted == 1 and store.count("messages") == 1
    store.close()


def test_the_boot_count_goes_up_across_opens(tmp_path):
    path = tmp_path / "edgeinfer.db"
    first = Store(path)
    assert first.next_boot() == 1
    first.close()
    second = Store(path)
    assert second.next_boot() == 2
    second.close()
