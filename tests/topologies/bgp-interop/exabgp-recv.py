#!/usr/bin/python3
"""ExaBGP API process: appends every JSON message ExaBGP sends it to the file named by argv[1],
one per line, so tests can read what ExaBGP received."""
import sys

with open(sys.argv[1], "a", buffering=1) as out:
    for line in sys.stdin:
        out.write(line)
