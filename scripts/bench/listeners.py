"""Listeners for the latency probe, run in the victim namespace, until
killed: TCP on each port given (accept and close), and UDP on each port +
1000 (the background trickle lands there instead of drawing ICMP errors).

usage: listeners.py PORT [PORT...]
"""

import select
import socket
import sys

socks = []
for port in map(int, sys.argv[1:]):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(512)
    socks.append(sock)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("0.0.0.0", port + 1000))
    socks.append(sink)
while True:
    for ready in select.select(socks, [], [])[0]:
        if ready.type == socket.SOCK_DGRAM:
            ready.recv(2048)
        else:
            conn, _addr = ready.accept()
            conn.close()
