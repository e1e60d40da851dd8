"""TCP connect time, run in the client namespace: prints a JSON list of microseconds.

usage: connect_rtt.py HOST PORT COUNT INTERVAL_SECONDS
connect() returns when the SYN-ACK arrives: one queued SYN per sample.
"""

import json
import socket
import sys
import time

host, port, count, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
samples = []
for _ in range(count):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        start = time.perf_counter()
        try:
            sock.connect((host, port))
            samples.append((time.perf_counter() - start) * 1e6)
        except OSError:
            pass
    time.sleep(interval)
print(json.dumps(samples))
