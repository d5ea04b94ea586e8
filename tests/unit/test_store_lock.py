"""One writer per data directory: a second writable Store on the same store is refused with a clear message.

The refusal is what keeps two containers on one volume (or a blue-green replacement started before the old
daemon stopped) from interleaving their outboxes. The holder is a real second process where it matters:
flock is shared across processes (and containers on one host), and the kernel drops it when the holder dies.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from edgeinfer.errors import StoreError
from edgeinfer.store.sqlite import EventRow, Store


def hold_store_in_child(path):
    """A child process that opens the store writable, says so on stdout, then sleeps until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from edgeinfer.store.sqlite import Store
        store = Store(Path({str(path)!r}))
        print("open", flush=True)
        time.sleep(120)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "open", "the child could not open the store"
    return child


def test_a_second_writer_in_another_process_is_refused_naming_the_dir_and_the_holder(tmp_path):
    path = tmp_path / "edgeinfer.db"
    child = hold_store_in_child(path)
    try:
        with pytest.raises(StoreError) as refused:
            Store(path)
        message = str(refused.value)
        assert f"the data directory {tmp_path} is in use by another edgeinfer" in message
        assert f"pid {child.pid} on host {socket.gethostname()}" in message
        assert "its own data_dir" in message
    finally:
        child.kill()
        child.wait()


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "edgeinfer.db"
    child = hold_store_in_child(path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert path.with_name("edgeinfer.db.lock").exists()  # the file stays; the lock went with the process
    store = Store(path)
    store.append([EventRow("a", 1, "{}")])
    assert store.count("events") == 1
    store.close()


def test_a_second_writer_in_the_same_process_is_refused_until_the_first_closes(tmp_path):
    path = tmp_path / "edgeinfer.db"
    first = Store(path)
    with pytest.raises(StoreError, match="is in use by another edgeinfer"):
        Store(path)
    first.close()
    second = Store(path)  # closing released it
    second.close()


def test_readers_take_no_lock_while_a_writer_holds_it(tmp_path):
    path = tmp_path / "edgeinfer.db"
    writer = Store(path)
    writer.append([EventRow("a", 1, "{}")])
    reader = Store(path, readonly=True)
    assert reader.count("events") == 1
    reader.close()
    writer.close()
