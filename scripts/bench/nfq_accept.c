/* nfq_accept.c - the ceiling: an accept-all libnetfilter_queue consumer in C.
 *
 * One verdict per packet (nfq_set_verdict), whole packet copied (the same copy
 * mode as NetfilterQueue), queue max length and netlink receive buffer set so a
 * large backlog can build while the process is stopped (drain test).
 *
 *   nfq_accept [-q QUEUE] [-m MAXLEN] [-b RCVBUF_BYTES] [-f]   (-f: fail-open on)
 *
 * Prints "bound queue N" once ready and "accepted N" on SIGTERM/SIGINT.
 * Built by scripts/bench/bench.py: gcc -O2 nfq_accept.c -lnetfilter_queue -lnfnetlink
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
/* libc headers first: the kernel's linux/in.h then yields to netinet/in.h */
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <libnfnetlink/libnfnetlink.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static volatile sig_atomic_t stop;
static unsigned long long accepted;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data)
{
    (void)msg; (void)data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph)
        return 0;
    accepted++;
    return nfq_set_verdict(qh, ntohl(ph->packet_id), NF_ACCEPT, 0, NULL);
}

static void die(const char *what)
{
    fprintf(stderr, "nfq_accept: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: recv() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int main(int argc, char **argv)
{
    unsigned queue = 0, maxlen = 100000, rcvbuf = 128u << 20;
    int opt, fail_open = 0;
    while ((opt = getopt(argc, argv, "q:m:b:f")) != -1) {
        switch (opt) {
        case 'q': queue = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'm': maxlen = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'b': rcvbuf = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'f': fail_open = 1; break;
        default:
            fprintf(stderr, "usage: %s [-q QUEUE] [-m MAXLEN] [-b RCVBUF] [-f]\n", argv[0]);
            return 2;
        }
    }
    install_signals();
    struct nfq_handle *h = nfq_open();
    if (!h)
        die("nfq_open");
    struct nfq_q_handle *qh = nfq_create_queue(h, queue, &on_packet, NULL);
    if (!qh)
        die("nfq_create_queue (queue already bound?)");
    if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0)
        die("nfq_set_mode");
    if (nfq_set_queue_maxlen(qh, maxlen) < 0)
        die("nfq_set_queue_maxlen");
    if (nfq_set_queue_flags(qh, NFQA_CFG_F_FAIL_OPEN, fail_open ? NFQA_CFG_F_FAIL_OPEN : 0) < 0)
        die("nfq_set_queue_flags");
    nfnl_rcvbufsiz(nfq_nfnlh(h), rcvbuf); /* SO_RCVBUFFORCE */
    int fd = nfq_fd(h), one = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
    printf("bound queue %u maxlen %u fail_open %d\n", queue, maxlen, fail_open);
    fflush(stdout);

    static char buf[65536 + 4096] __attribute__((aligned));
    while (!stop) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n >= 0) {
            nfq_handle_packet(h, buf, (int)n);
        } else if (errno != EINTR && errno != ENOBUFS) {
            die("recv");
        }
    }
    nfq_destroy_queue(qh);
    nfq_close(h);
    printf("accepted %llu\n", accepted);
    return 0;
}
