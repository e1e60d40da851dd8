"""The floor of any Python design: NetfilterQueue, accept every packet.

usage: nfq_py_accept.py QUEUE MAXLEN RCVBUF   (fail-open stays off: the library has no flag)
"""

import sys

from netfilterqueue import NetfilterQueue

queue, maxlen, rcvbuf = (int(a) for a in sys.argv[1:4])
nfq = NetfilterQueue()
nfq.bind(queue, lambda pkt: pkt.accept(), max_len=maxlen, sock_len=rcvbuf)
try:
    nfq.run()
except KeyboardInterrupt:
    pass
finally:
    nfq.unbind()
