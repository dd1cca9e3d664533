/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest testcase: colo-compare around a checkpoint
 *
 * colo-compare sits on the COLO primary and releases a TCP segment of the
 * primary guest only when the secondary guest sent the same bytes; when
 * they differ it asks for a checkpoint, which releases what the primary
 * sent, drops what the secondary sent and gives the secondary the
 * primary's state.  These cases drive one colo-compare object directly:
 * the test plays both guests (TCP segments written to primary_in and
 * secondary_in), the client side (outdev) and the COLO frame, through the
 * notify_dev protocol ("DO_CHECKPOINT" out, "COLO_CHECKPOINT" in), so no
 * guest and no migration are needed.
 *
 * Every chardev carries frames as a 32-bit big-endian length followed by
 * the bytes of an Ethernet frame (no vnet header).
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "libqtest.h"
#include "qemu/bswap.h"
#include "qemu/sockets.h"
#include "qapi/error.h"

#define FRAME_MAX 256
/* Long enough for the compare thread, short enough for a quick negative */
#define WAIT_MS 3000
#define QUIET_MS 500

enum { PRI, SEC, OUT, NOTIFY, NR_CHANNELS };
static const char *const channel_ids[NR_CHANNELS] = {
    "pri", "sec", "out", "ntf",
};

typedef struct Compare {
    QTestState *qts;
    char *dir;
    char *paths[NR_CHANNELS];
    int fd[NR_CHANNELS];
} Compare;

/*
 * A TCP segment from the guest (10.0.0.10:7777) to a client
 * (10.0.0.2:40000) carrying @payload; colo-compare checks neither
 * checksum, so both stay zero.
 */
static size_t tcp_frame(uint8_t *buf, uint32_t seq, uint32_t ack,
                        const char *payload)
{
    static const uint8_t head[] = {
        /* Ethernet: client MAC, guest MAC, IPv4 */
        0x52, 0x54, 0x00, 0x00, 0x00, 0x02,
        0x52, 0x54, 0x00, 0x00, 0x00, 0x10,
        0x08, 0x00,
        /* IPv4: 20 bytes, length filled in below, DF, TTL 64, TCP */
        0x45, 0x00, 0x00, 0x00, 0x00, 0x01, 0x40, 0x00,
        0x40, 0x06, 0x00, 0x00,
        10, 0, 0, 10,
        10, 0, 0, 2,
        /* TCP: ports 7777 -> 40000, seq and ack below, 20 bytes, PSH|ACK */
        0x1e, 0x61, 0x9c, 0x40,
        0, 0, 0, 0,
        0, 0, 0, 0,
        0x50, 0x18, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
    };
    size_t len = strlen(payload);

    g_assert_cmpuint(sizeof(head) + len, <=, FRAME_MAX);
    memcpy(buf, head, sizeof(head));
    stw_be_p(buf + 14 + 2, 20 + 20 + len);
    stl_be_p(buf + 14 + 20 + 4, seq);
    stl_be_p(buf + 14 + 20 + 8, ack);
    memcpy(buf + sizeof(head), payload, len);
    return sizeof(head) + len;
}

static void send_frame(int fd, const void *data, size_t len)
{
    uint32_t be_len = cpu_to_be32(len);

    g_assert_cmpint(qemu_send_full(fd, &be_len, sizeof(be_len)), ==,
                    sizeof(be_len));
    g_assert_cmpint(qemu_send_full(fd, data, len), ==, len);
}

static void send_segment(Compare *c, int channel, uint32_t seq,
                         const char *payload)
{
    uint8_t buf[FRAME_MAX];

    send_frame(c->fd[channel], buf, tcp_frame(buf, seq, 5000, payload));
}

static bool read_exactly(int fd, void *buf, size_t len, int timeout_ms)
{
    size_t done = 0;

    while (done < len) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;

        if (poll(&pfd, 1, timeout_ms) != 1) {
            return false;
        }
        n = read(fd, (char *)buf + done, len - done);
        g_assert_cmpint(n, >, 0);
        done += n;
    }
    return true;
}

/*
 * The next frame on @channel, or -1 if none comes within @timeout_ms.
 */
static ssize_t recv_frame(Compare *c, int channel, uint8_t *buf,
                          int timeout_ms)
{
    uint32_t be_len, len;

    if (!read_exactly(c->fd[channel], &be_len, sizeof(be_len), timeout_ms)) {
        return -1;
    }
    len = be32_to_cpu(be_len);
    g_assert_cmpuint(len, <=, FRAME_MAX);
    g_assert_true(read_exactly(c->fd[channel], buf, len, WAIT_MS));
    return len;
}

/* The next frame released to the client must be @payload at @seq. */
static void expect_released(Compare *c, uint32_t seq, const char *payload)
{
    uint8_t want[FRAME_MAX], got[FRAME_MAX];
    size_t want_len = tcp_frame(want, seq, 5000, payload);
    ssize_t len = recv_frame(c, OUT, got, WAIT_MS);

    g_assert_cmpint(len, ==, want_len);
    g_assert_cmpmem(got, len, want, want_len);
}

static void expect_nothing_released(Compare *c)
{
    uint8_t buf[FRAME_MAX];

    g_assert_cmpint(recv_frame(c, OUT, buf, QUIET_MS), ==, -1);
}

static void expect_checkpoint_request(Compare *c)
{
    uint8_t buf[FRAME_MAX];
    ssize_t len = recv_frame(c, NOTIFY, buf, WAIT_MS);

    g_assert_cmpmem(buf, MAX(len, 0), "DO_CHECKPOINT", 13);
}

static void expect_no_checkpoint_request(Compare *c)
{
    uint8_t buf[FRAME_MAX];

    g_assert_cmpint(recv_frame(c, NOTIFY, buf, QUIET_MS), ==, -1);
}

/* What the COLO frame says once a checkpoint is done. */
static void checkpoint_done(Compare *c)
{
    send_frame(c->fd[NOTIFY], "COLO_CHECKPOINT", 15);
}

static void compare_start(Compare *c)
{
    g_autoptr(GString) args = g_string_new("-machine none -nodefaults "
                                           "-object iothread,id=iot0");
    int i;

    c->dir = g_dir_make_tmp("colo-compare-test-XXXXXX", NULL);
    g_assert_nonnull(c->dir);
    for (i = 0; i < NR_CHANNELS; i++) {
        c->paths[i] = g_strdup_printf("%s/%s.sock", c->dir, channel_ids[i]);
        g_string_append_printf(args, " -chardev socket,id=%s,path=%s,"
                               "server=on,wait=off", channel_ids[i],
                               c->paths[i]);
    }
    g_string_append(args, " -object colo-compare,id=cmp0,primary_in=pri,"
                    "secondary_in=sec,outdev=out,notify_dev=ntf,"
                    "iothread=iot0");
    c->qts = qtest_init(args->str);
    for (i = 0; i < NR_CHANNELS; i++) {
        c->fd[i] = unix_connect(c->paths[i], &error_abort);
    }
    /* A monitor round trip: QEMU has accepted the four connections. */
    qtest_qmp_assert_success(c->qts, "{ 'execute': 'query-status' }");
}

static void compare_stop(Compare *c)
{
    int i;

    qtest_quit(c->qts);
    for (i = 0; i < NR_CHANNELS; i++) {
        close(c->fd[i]);
        unlink(c->paths[i]);
        g_free(c->paths[i]);
    }
    rmdir(c->dir);
    g_free(c->dir);
}

/* Identical output is released as soon as both sides sent it. */
static void test_same_output_released(void)
{
    Compare c;

    compare_start(&c);
    send_segment(&c, PRI, 1000, "PONG 1\n");
    send_segment(&c, SEC, 1000, "PONG 1\n");
    expect_released(&c, 1000, "PONG 1\n");
    send_segment(&c, SEC, 1007, "PONG 2\n");
    send_segment(&c, PRI, 1007, "PONG 2\n");
    expect_released(&c, 1007, "PONG 2\n");
    expect_no_checkpoint_request(&c);
    compare_stop(&c);
}

/*
 * A mismatch holds the primary's segment and asks for a checkpoint; the
 * checkpoint releases it.  After that, what the checkpoint released counts
 * as compared: a secondary resumed from the primary's state may send those
 * bytes again (a tail loss probe), and that copy must not be compared with
 * the next segment, or every later reply forces a checkpoint of its own.
 */
static void test_checkpoint_ends_comparison(void)
{
    Compare c;

    compare_start(&c);
    send_segment(&c, PRI, 1000, "TIME 1 4433515876\n");
    send_segment(&c, SEC, 1000, "TIME 1 4433519012\n");
    expect_checkpoint_request(&c);
    expect_nothing_released(&c);

    checkpoint_done(&c);
    expect_released(&c, 1000, "TIME 1 4433515876\n");

    /*
     * The resumed secondary retransmits the released segment (the primary,
     * which got the client's ACK in time, does not), then both answer the
     * next request alike.
     */
    send_segment(&c, SEC, 1000, "TIME 1 4433515876\n");
    send_segment(&c, SEC, 1018, "PONG 2\n");
    send_segment(&c, PRI, 1018, "PONG 2\n");
    expect_released(&c, 1018, "PONG 2\n");
    expect_no_checkpoint_request(&c);
    compare_stop(&c);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/colo-compare/same-output-released",
                   test_same_output_released);
    qtest_add_func("/colo-compare/checkpoint-ends-comparison",
                   test_checkpoint_ends_comparison);
    return g_test_run();
}
