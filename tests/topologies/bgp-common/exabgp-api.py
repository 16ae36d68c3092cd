#!/usr/bin/python3
"""ExaBGP API process for the lab.

- Appends every JSON message ExaBGP sends (state changes, updates, notifications, refreshes) to
  <dir>/received.jsonl, one per line, so tests can read what ExaBGP received.
- Forwards every line written to the FIFO <dir>/api.fifo to ExaBGP as an API command
  (`announce route ...`, `withdraw route ...`, `announce route-refresh ipv4 unicast`), so tests
  can change what ExaBGP announces at run time.
"""
import os
import sys
import threading

folder = sys.argv[1]
fifo = os.path.join(folder, "api.fifo")
if not os.path.exists(fifo):
    os.mkfifo(fifo)


def forward_commands():
    while True:
        # Opening blocks until a writer comes; each writer sends whole lines, then closes.
        with open(fifo) as commands:
            for line in commands:
                sys.stdout.write(line if line.endswith("\n") else line + "\n")
                sys.stdout.flush()


threading.Thread(target=forward_commands, daemon=True).start()
with open(os.path.join(folder, "received.jsonl"), "a", buffering=1) as out:
    for line in sys.stdin:
        out.write(line)
