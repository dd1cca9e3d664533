/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest testcase: filter-rewriter passes on what arrives while the VM is
 * stopped
 *
 * On a COLO secondary, the client's segments that the primary mirrors
 * during a checkpoint reach filter-rewriter while the VM is stopped.
 * The rewriter used to park its rewritten copy in a queue of its own
 * that only the next packet through the rewriter flushed: the segment
 * reached the secondary's guest only once the client had retransmitted
 * it, 200 ms later, and colo-compare held the primary's reply for as
 * long.  A filter-mirror placed after the rewriter on the same netdev
 * shows whether the segment went on.
 *
 * The netdev is a socket backend whose frames are a 32-bit big-endian
 * length followed by an Ethernet frame, as are the mirror's.
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "libqtest.h"
#include "qemu/bswap.h"
#include "qemu/iov.h"
#include "qemu/sockets.h"

#define WAIT_MS 5000
#define FRAME_LEN 64

/* An IPv4 TCP segment (ACK) from a client to the guest, no payload */
static void tcp_frame(uint8_t *f, uint32_t seq)
{
    memset(f, 0, FRAME_LEN);
    memcpy(f, "\x52\x54\x00\x12\x34\x56\x52\x54\x00\x65\x43\x21\x08\x00", 14);
    f[14] = 0x45;                               /* IPv4, 20-byte header */
    stw_be_p(f + 16, 40);                       /* total length */
    f[22] = 64;                                 /* TTL */
    f[23] = 6;                                  /* TCP */
    memcpy(f + 26, "\xc0\xa8\x4f\x02\xc0\xa8\x4f\x0a", 8);
    stw_be_p(f + 34, 40000);                    /* source port */
    stw_be_p(f + 36, 7777);                     /* destination port */
    stl_be_p(f + 38, seq);
    stl_be_p(f + 42, 1000);                     /* ack */
    f[46] = 0x50;                               /* 20-byte header */
    f[47] = 0x10;                               /* ACK */
    stw_be_p(f + 48, 4096);                     /* window */
}

static void send_frame(int fd, uint32_t seq)
{
    uint8_t frame[FRAME_LEN];
    uint32_t len = cpu_to_be32(sizeof(frame));
    struct iovec iov[] = {
        { .iov_base = &len, .iov_len = sizeof(len) },
        { .iov_base = frame, .iov_len = sizeof(frame) },
    };

    tcp_frame(frame, seq);
    g_assert_cmpint(iov_send(fd, iov, 2, 0, sizeof(len) + sizeof(frame)),
                    ==, sizeof(len) + sizeof(frame));
}

/* The sequence number of the next frame on @fd, or -1 after @ms */
static int64_t recv_frame_seq(int fd, int ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    uint8_t buf[4 + FRAME_LEN];
    size_t got = 0;

    while (got < sizeof(buf)) {
        ssize_t n;

        if (poll(&pfd, 1, ms) <= 0) {
            return -1;
        }
        n = recv(fd, buf + got, sizeof(buf) - got, 0);
        if (n <= 0) {
            return -1;
        }
        got += n;
    }
    g_assert_cmpint(ldl_be_p(buf), ==, FRAME_LEN);
    return ldl_be_p(buf + 4 + 38);
}

static void test_stopped_vm(void)
{
    int backend[2], mirror;
    char sock_path[] = "/tmp/colo-rewriter-test.XXXXXX";
    QTestState *qts;

    g_assert(socketpair(PF_UNIX, SOCK_STREAM, 0, backend) == 0);
    g_assert(mkstemp(sock_path) >= 0);
    qts = qtest_initf("-machine pc -S -nic socket,id=n0,fd=%d "
                      "-object filter-rewriter,id=rew0,netdev=n0,queue=all "
                      "-chardev socket,id=m,path=%s,server=on,wait=off "
                      "-object filter-mirror,id=m0,netdev=n0,queue=tx,"
                      "outdev=m", backend[1], sock_path);
    mirror = unix_connect(sock_path, NULL);
    g_assert(mirror >= 0);
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");

    /* stopped, as a COLO secondary during a checkpoint */
    send_frame(backend[0], 1);
    g_assert_cmpint(recv_frame_seq(mirror, WAIT_MS), ==, 1);

    qtest_qmp_assert_success(qts, "{ 'execute': 'cont' }");
    send_frame(backend[0], 2);
    g_assert_cmpint(recv_frame_seq(mirror, WAIT_MS), ==, 2);

    close(mirror);
    close(backend[0]);
    unlink(sock_path);
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/colo-rewriter/stopped-vm-passes-on", test_stopped_vm);
    return g_test_run();
}
