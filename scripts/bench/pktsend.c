/* pktsend.c - a fast, bounded raw IPv4 packet sender for the benchmark (sendmmsg).
 *
 *   pktsend -f FILE [-n COUNT] [-r PPS] [-t SECONDS] [-o OFFSET] [-R SEED] [-b BATCH]
 *
 * FILE holds prebuilt IPv4 packets, each preceded by its length (2 bytes, big endian),
 * written by scripts/bench/mixes.py. The packets are sent in order through a raw
 * IP_HDRINCL socket, cycling through the file until COUNT packets (default: the
 * file's count) or SECONDS have passed. -r paces to PPS packets/s (0: as fast as
 * possible). -o adds OFFSET to every source address; -R SEED replaces it with a
 * random public unicast address per packet (random-source floods). TCP/UDP
 * checksums are recomputed when the source changes.
 *
 * Prints: "sent N errors E seconds S pps P".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PKT 1600
#define MAX_BATCH 1024

struct pkt { uint16_t len; uint8_t *data; };

static void die(const char *what)
{
    fprintf(stderr, "pktsend: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct pkt *load(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    size_t cap = 1024, n = 0;
    struct pkt *pkts = malloc(cap * sizeof(*pkts));
    uint8_t hdr[2];
    while (fread(hdr, 1, 2, f) == 2) {
        uint16_t len = (uint16_t)(hdr[0] << 8 | hdr[1]);
        if (len < 20 || len > MAX_PKT) {
            fprintf(stderr, "pktsend: bad packet length %u in %s\n", len, path);
            exit(1);
        }
        if (n == cap) {
            cap *= 2;
            pkts = realloc(pkts, cap * sizeof(*pkts));
        }
        pkts[n].len = len;
        pkts[n].data = malloc(len);
        if (fread(pkts[n].data, 1, len, f) != len) {
            fprintf(stderr, "pktsend: truncated %s\n", path);
            exit(1);
        }
        n++;
    }
    fclose(f);
    if (!n) {
        fprintf(stderr, "pktsend: no packets in %s\n", path);
        exit(1);
    }
    *count = n;
    return pkts;
}

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
    for (; len > 1; p += 2, len -= 2)
        sum += (uint32_t)(p[0] << 8 | p[1]);
    if (len)
        sum += (uint32_t)(p[0] << 8);
    return sum;
}

/* Recompute the TCP or UDP checksum of an IPv4 packet (pseudo header included). */
static void fix_l4(uint8_t *p, size_t len)
{
    size_t ihl = (size_t)(p[0] & 0x0f) * 4;
    uint8_t proto = p[9];
    size_t off = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 0;
    if (!off || len < ihl + off + 2)
        return;
    uint8_t *l4 = p + ihl;
    size_t l4len = len - ihl;
    l4[off] = l4[off + 1] = 0;
    uint32_t sum = sum16(p + 12, 8, 0) + proto + (uint32_t)l4len;
    sum = sum16(l4, l4len, sum);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    uint16_t c = (uint16_t)~sum;
    if (proto == IPPROTO_UDP && c == 0)
        c = 0xffff;
    l4[off] = (uint8_t)(c >> 8);
    l4[off + 1] = (uint8_t)c;
}

static void set_src(uint8_t *p, uint32_t src)
{
    uint32_t be = htonl(src);
    memcpy(p + 12, &be, 4);
}

static uint32_t get_src(const uint8_t *p)
{
    uint32_t be;
    memcpy(&be, p + 12, 4);
    return ntohl(be);
}

static uint64_t rng_state;

static uint32_t random_public(void)
{
    for (;;) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        uint32_t a = (uint32_t)(rng_state >> 16);
        uint8_t first = (uint8_t)(a >> 24);
        if (first != 0 && first != 10 && first != 127 && first < 224)
            return a;
    }
}

struct opts {
    const char *file;
    unsigned long long count;
    double pps, seconds;
    long offset;
    unsigned long long seed;
    int random_src;
    unsigned batch;
};

static struct opts parse(int argc, char **argv)
{
    struct opts o = {.batch = 64};
    int opt;
    while ((opt = getopt(argc, argv, "f:n:r:t:o:R:b:")) != -1) {
        switch (opt) {
        case 'f': o.file = optarg; break;
        case 'n': o.count = strtoull(optarg, NULL, 10); break;
        case 'r': o.pps = strtod(optarg, NULL); break;
        case 't': o.seconds = strtod(optarg, NULL); break;
        case 'o': o.offset = strtol(optarg, NULL, 10); break;
        case 'R': o.random_src = 1; o.seed = strtoull(optarg, NULL, 10); break;
        case 'b': o.batch = (unsigned)strtoul(optarg, NULL, 10); break;
        default: o.file = NULL; optind = argc; break;
        }
    }
    if (!o.file || o.batch < 1 || o.batch > MAX_BATCH) {
        fprintf(stderr, "usage: pktsend -f FILE [-n COUNT] [-r PPS] [-t SECONDS] "
                        "[-o OFFSET] [-R SEED] [-b BATCH<=%d]\n", MAX_BATCH);
        exit(2);
    }
    return o;
}

static int open_raw(void)
{
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); /* implies IP_HDRINCL */
    if (fd < 0)
        die("socket(SOCK_RAW)");
    int sndbuf = 16 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
    return fd;
}

static uint8_t slot[MAX_BATCH][MAX_PKT];
static struct mmsghdr msgs[MAX_BATCH];
static struct iovec iovs[MAX_BATCH];
static struct sockaddr_in dsts[MAX_BATCH];

/* Fill up to `want` slots starting at packet index *next; returns how many. */
static unsigned fill(const struct pkt *pkts, size_t npkts, size_t *next, unsigned want,
                     int random_src)
{
    for (unsigned i = 0; i < want; i++) {
        const struct pkt *pk = &pkts[*next];
        *next = (*next + 1) % npkts;
        memcpy(slot[i], pk->data, pk->len);
        if (random_src) {
            set_src(slot[i], random_public());
            fix_l4(slot[i], pk->len);
        }
        iovs[i].iov_base = slot[i];
        iovs[i].iov_len = pk->len;
        dsts[i].sin_family = AF_INET;
        memcpy(&dsts[i].sin_addr, slot[i] + 16, 4);
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        msgs[i].msg_hdr.msg_name = &dsts[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(dsts[i]);
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return want;
}

/* Send slots [0, n); returns packets that failed (counted, not retried). */
static unsigned long long send_all(int fd, unsigned n)
{
    unsigned done = 0;
    unsigned long long errors = 0;
    while (done < n) {
        int r = sendmmsg(fd, msgs + done, n - done, 0);
        if (r > 0) {
            done += (unsigned)r;
        } else if (errno == ENOBUFS || errno == EAGAIN || errno == ENOMEM || errno == EPERM) {
            errors++;
            done++;
            sched_yield();
        } else if (errno != EINTR) {
            die("sendmmsg");
        }
    }
    return errors;
}

static void pace(double start, unsigned long long sent, double pps)
{
    if (pps <= 0)
        return;
    double wait = start + (double)sent / pps - now_s();
    if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv)
{
    struct opts o = parse(argc, argv);
    size_t npkts;
    struct pkt *pkts = load(o.file, &npkts);
    if (o.offset && !o.random_src) {
        for (size_t i = 0; i < npkts; i++) {
            set_src(pkts[i].data, get_src(pkts[i].data) + (uint32_t)o.offset);
            fix_l4(pkts[i].data, pkts[i].len);
        }
    }
    rng_state = o.seed ? o.seed : 0x9e3779b97f4a7c15ull;
    unsigned long long total = o.count ? o.count : npkts, sent = 0, errors = 0;
    unsigned batch = o.batch;
    if (o.pps > 0 && o.pps / 1000 < batch)
        batch = o.pps / 1000 > 1 ? (unsigned)(o.pps / 1000) : 1;
    int fd = open_raw();
    size_t next = 0;
    double start = now_s();
    while (sent < total) {
        if (o.seconds > 0 && now_s() - start >= o.seconds)
            break;
        unsigned want = total - sent < batch ? (unsigned)(total - sent) : batch;
        pace(start, sent, o.pps);
        errors += send_all(fd, fill(pkts, npkts, &next, want, o.random_src));
        sent += want;
    }
    double secs = now_s() - start;
    printf("sent %llu errors %llu seconds %.6f pps %.0f\n", sent - errors, errors, secs,
           secs > 0 ? (double)(sent - errors) / secs : 0.0);
    return 0;
}
