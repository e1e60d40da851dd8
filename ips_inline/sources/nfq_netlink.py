"""nfnetlink_queue messages that NetfilterQueue does not send.

The queue config (fail-open flag, max length) and the batch verdict, built
with `struct` and sent on the netlink socket NetfilterQueue already bound:
the kernel accepts them only from the queue's owner port id (EPERM otherwise).
Layout (include/uapi/linux/netfilter/nfnetlink{,_queue}.h): nlmsghdr and
attribute headers in host order; nfgenmsg.res_id, config values and the
verdict header in network order (the kernel reads them with ntohl/ntohs).
"""

from __future__ import annotations

import errno
import os
import secrets
import select
import socket
import struct
import time
from collections.abc import Callable

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFNETLINK_V0 = 0
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NFQA_VERDICT_HDR = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 1 << 0
NF_DROP, NF_ACCEPT = 0, 1
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # not exported by Python 3.11

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, port id
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big-endian queue number)
_NLATTR = struct.Struct("=HH")  # len, type
_BE32 = struct.Struct("!I")
_VERDICT_HDR = struct.Struct("!II")  # verdict, packet id
_ERRNO = struct.Struct("=i")
ACK_TIMEOUT = 1.0  # seconds; the kernel queues the ACK before sendto() returns
RECV_SIZE = 65536


class NfqNetlinkError(Exception):
    """The kernel refused a queue message, or never answered; one line."""


def attr(attr_type: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes (NLA_ALIGNTO)."""
    size = _NLATTR.size + len(payload)
    return _NLATTR.pack(size, attr_type) + payload + b"\0" * (-size % 4)


def message(msg_type: int, queue_num: int, body: bytes, *, flags: int = NLM_F_REQUEST,
            seq: int = 0) -> bytes:
    """nlmsghdr + nfgenmsg(AF_UNSPEC, v0, queue) + attributes, to the kernel (port 0)."""
    payload = _NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, queue_num) + body
    nl_type = NFNL_SUBSYS_QUEUE << 8 | msg_type
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), nl_type, flags, seq, 0) + payload


def config_message(queue_num: int, *, fail_open: bool, maxlen: int, seq: int = 0) -> bytes:
    """NFQNL_MSG_CONFIG: queue max length, and the fail-open flag set or cleared
    (the mask says which flags change, so other flags are left alone)."""
    flags = NFQA_CFG_F_FAIL_OPEN if fail_open else 0
    body = (attr(NFQA_CFG_QUEUE_MAXLEN, _BE32.pack(maxlen))
            + attr(NFQA_CFG_MASK, _BE32.pack(NFQA_CFG_F_FAIL_OPEN))
            + attr(NFQA_CFG_FLAGS, _BE32.pack(flags)))
    return message(NFQNL_MSG_CONFIG, queue_num, body, flags=NLM_F_REQUEST | NLM_F_ACK, seq=seq)


def batch_prefix(queue_num: int) -> bytes:
    """A NFQNL_MSG_VERDICT_BATCH message without its last 8 bytes (the verdict
    header): constant per queue, so the hot path only packs verdict and id."""
    full = message(NFQNL_MSG_VERDICT_BATCH, queue_num,
                   attr(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(0, 0)))
    return full[:-_VERDICT_HDR.size]


def batch_verdict_message(queue_num: int, verdict: int, last_id: int) -> bytes:
    """The verdict for every packet still queued with an id up to last_id."""
    return batch_prefix(queue_num) + _VERDICT_HDR.pack(verdict, last_id)


def ack_errno(datagram: bytes, seq: int) -> int | None:
    """The errno (0 = success) of the ACK for `seq` in a datagram, or None
    when the datagram holds something else (a queued packet)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(datagram):
        length, nl_type, _flags, msg_seq, _port = _NLMSGHDR.unpack_from(datagram, offset)
        if length < _NLMSGHDR.size:
            return None
        if nl_type == NLMSG_ERROR and msg_seq == seq and length >= _NLMSGHDR.size + 4:
            return -_ERRNO.unpack_from(datagram, offset + _NLMSGHDR.size)[0]
        offset += (length + 3) & ~3
    return None


def describe(err: int) -> str:
    return f"{os.strerror(err)} ({errno.errorcode.get(err, err)})"


class QueueControl:
    """Config and batch verdicts on the socket of a bound NetfilterQueue.

    A dup of its fd: the same socket, so the same port id, and closing ours
    leaves NetfilterQueue's open. The fd's blocking mode is never changed
    (it is shared); reads use MSG_DONTWAIT."""

    def __init__(self, fd: int, queue_num: int) -> None:
        self.queue_num = queue_num
        self.sock = socket.socket(fileno=os.dup(fd))
        self._seq = secrets.randbits(31)

    def set_rcvbuf(self, size: int) -> int:
        """SO_RCVBUFFORCE (root, beyond rmem_max), else SO_RCVBUF; returns the
        size the kernel granted (twice the request: it counts overhead)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def set_recv_timeout(self, seconds: float) -> None:
        """SO_RCVTIMEO: a blocking recv() on the socket (NetfilterQueue's
        run()) returns EAGAIN after this long without a packet."""
        whole = int(seconds)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                             struct.pack("@ll", whole, int((seconds - whole) * 1e6)))

    def configure(self, *, fail_open: bool, maxlen: int, backlog: list[bytes]) -> None:
        """Send the config with NLM_F_ACK and read up to its ACK.

        Packets may already sit on the socket ahead of the ACK (the queue is
        live since bind); they are appended to `backlog` for the caller to
        hand to NetfilterQueue, so none is left without a verdict."""
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        self.sock.send(config_message(self.queue_num, fail_open=fail_open, maxlen=maxlen,
                                      seq=self._seq))
        err = self._await_ack(self._seq, backlog)
        if err:
            raise NfqNetlinkError(f"NFQUEUE {self.queue_num}: the kernel rejected the queue "
                                  f"config (fail_open, queue_maxlen): {describe(err)}")

    def _await_ack(self, seq: int, backlog: list[bytes]) -> int:
        deadline = time.monotonic() + ACK_TIMEOUT
        while True:
            try:
                datagram = self.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    raise NfqNetlinkError(f"NFQUEUE {self.queue_num}: no answer from the "
                                          "kernel to the queue config") from None
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # packets were lost, not the socket
                    continue
                raise
            err = ack_errno(datagram, seq)
            if err is not None:
                return err
            backlog.append(datagram)

    def batch_sender(self) -> Callable[[int, int], None]:
        """send(verdict, last_id): `verdict` for every queued packet up to an id.
        No NLM_F_ACK: a failure still comes back as an error message, which
        NetfilterQueue's run() reads and ignores (it is no packet)."""
        send = self.sock.send
        prefix = batch_prefix(self.queue_num)
        pack = _VERDICT_HDR.pack

        def send_batch(verdict: int, last_id: int) -> None:
            send(prefix + pack(verdict, last_id))

        return send_batch

    def close(self) -> None:
        self.sock.close()
