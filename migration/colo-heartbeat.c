/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * COLO heartbeat: the colo-heartbeat object (COLO-HA fork)
 *
 * Both QEMUs of a COLO pair run one, linked by a socket chardev.  Each
 * sends a small versioned message every @interval milliseconds (wire
 * format in docs/system/qemu-colo.rst) saying its COLO mode, its run
 * state and whether it took over.  The object reports losses of the
 * peer with COLO_HEARTBEAT_LOST and acts by itself only on unambiguous
 * news (docs/system/qemu-colo.rst, "The heartbeat", rules 1-4):
 *
 * - the peer's process ended (its kernel closed a connection that had
 *   carried valid messages) or it entered failover-safe: a secondary
 *   fails over, a primary continues alone;
 * - silence never acts: it is reported, the cluster manager decides;
 * - a peer that says it took over makes this side stand down into
 *   failover-safe, and a side that took over says so for ever after;
 * - failover=manual turns every action into an event only.
 *
 * The object runs in an iothread (its own unless @iothread is given):
 * neither checkpoints nor anything else holding the BQL can delay a
 * heartbeat or a silence verdict.  Actions run in the main loop.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-colo-heartbeat.h"
#include "qapi/qapi-events-colo-heartbeat.h"
#include "qapi/qapi-commands-migration.h"
#include "qapi/qapi-commands-block-export.h"
#include "qapi/qapi-types-qom.h"
#include "qapi/visitor.h"
#include "qemu/cutils.h"
#include "block/aio-wait.h"
#include "qapi/qapi-commands-block-core.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qemu/queue.h"
#include "qom/object.h"
#include "qom/object_interfaces.h"
#include "chardev/char.h"
#include "chardev/char-fe.h"
#include "system/iothread.h"
#include "system/runstate.h"
#include "system/ha-quiesce.h"
#include "block/nbd.h"
#include "net/filter.h"
#include "net/colo-compare.h"
#include "migration/colo.h"
#include "migration/failover.h"
#include "migration/colo-heartbeat.h"
#include "migration/colo-replication-links.h"
#include "monitor/monitor.h"
#include "qobject/qdict.h"
#include "trace.h"

#define TYPE_COLO_HEARTBEAT "colo-heartbeat"
OBJECT_DECLARE_SIMPLE_TYPE(ColoHeartbeat, COLO_HEARTBEAT)

/* Wire format, version 1: 24 bytes, big-endian */
#define CHB_MAGIC 0x434f4c48            /* "COLH" */
#define CHB_VERSION 1
#define CHB_MSG_LEN 24
/* the longest message a later version may send */
#define CHB_MAX_LEN 1024
#define CHB_TYPE_BEAT 1
#define CHB_FLAG_TOOK_OVER 0x0001

enum {
    CHB_MODE_NONE = 0,
    CHB_MODE_PRIMARY = 1,
    CHB_MODE_SECONDARY = 2,
};

enum {
    CHB_STATUS_RUNNING = 1,
    CHB_STATUS_STOPPED = 2,
    CHB_STATUS_FAILOVER_SAFE = 3,
};

#define CHB_DEFAULT_INTERVAL 100
#define CHB_DEFAULT_TIMEOUT 1000

struct ColoHeartbeat {
    Object parent_obj;

    char *id;                   /* set at complete, read by any thread */

    /* properties */
    char *chardev;
    uint32_t interval;
    uint32_t timeout;
    ColoHeartbeatFailover failover;
    char *iothread_id;

    bool complete;
    IOThread *iothread;
    bool own_iothread;
    AioContext *ctx;
    CharFrontend chr;
    Chardev *chardev_obj;       /* referenced until finalize */
    QEMUTimer *timer;
    VMChangeStateEntry *vmstate;
    QTAILQ_ENTRY(ColoHeartbeat) next;

    /* receive buffer: iothread only */
    uint8_t buf[CHB_MAX_LEN];
    size_t buflen;

    /* everything below: under @lock */
    QemuMutex lock;
    bool connected;
    bool conn_valid;            /* a valid message on this connection */
    bool peer_alive;
    bool ever_seen;
    int64_t last_rx_ms;         /* QEMU_CLOCK_REALTIME */
    bool lost;                  /* a loss was reported, not yet restored */
    ColoHeartbeatLossReason lost_reason;
    int64_t lost_since_ms;
    COLOMode peer_mode;
    ColoHeartbeatPeerStatus peer_status;
    bool peer_took_over;
    uint64_t seq;
    uint64_t sent;
    uint64_t received;
    uint64_t errors;
    int64_t last_tick_ms;
    COLOMode last_mode;         /* this side's COLO mode at the last tick */
    bool took_over;             /* this side failed over / continues alone */
};

static QTAILQ_HEAD(, ColoHeartbeat) colo_heartbeats =
    QTAILQ_HEAD_INITIALIZER(colo_heartbeats);
static QemuMutex colo_heartbeats_lock;

static void __attribute__((constructor)) colo_heartbeat_init_lock(void)
{
    qemu_mutex_init(&colo_heartbeats_lock);
}

/*
 * Set once the main loop runs: objects given with -object complete
 * before the migration state exists, and get_colo_mode() needs it.
 */
static bool chb_main_loop_running;

static COLOMode chb_colo_mode(void)
{
    return qatomic_read(&chb_main_loop_running) ? get_colo_mode()
                                                : COLO_MODE_NONE;
}

static const char *chb_id(ColoHeartbeat *hb)
{
    return hb->id ? hb->id : "";
}

static int64_t chb_now(void)
{
    return qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
}

/*
 * This side's status.  Read without the BQL from the iothread: each of
 * these is one word, and a stale value is corrected one interval later.
 */
static uint8_t chb_local_status(void)
{
    if (ha_quiesce_active()) {
        return CHB_STATUS_FAILOVER_SAFE;
    }
    return runstate_is_running() ? CHB_STATUS_RUNNING : CHB_STATUS_STOPPED;
}

static uint8_t chb_mode_to_wire(COLOMode mode)
{
    switch (mode) {
    case COLO_MODE_PRIMARY:
        return CHB_MODE_PRIMARY;
    case COLO_MODE_SECONDARY:
        return CHB_MODE_SECONDARY;
    default:
        return CHB_MODE_NONE;
    }
}

/*
 * A failover of this side ran (or is running): another path (the
 * manager's x-colo-lost-heartbeat, this object earlier) started it.
 */
static bool chb_failover_started(void)
{
    return failover_get_state() != FAILOVER_STATUS_NONE;
}

/* Called with hb->lock held, in the iothread */
static void chb_track_mode(ColoHeartbeat *hb)
{
    COLOMode mode = chb_colo_mode();

    if (mode != COLO_MODE_NONE) {
        /* (re-)protected: a new pair, nothing taken over in it yet */
        hb->took_over = false;
    } else if (hb->last_mode != COLO_MODE_NONE && chb_failover_started()) {
        /* Rule 3: this side failed over or continues alone */
        hb->took_over = true;
        trace_colo_heartbeat_took_over(chb_id(hb));
        if (hb->last_mode == COLO_MODE_PRIMARY) {
            /* the manager chose this primary: its output is the only one */
            colo_compare_hold_output(false);
        }
    }
    hb->last_mode = mode;
}

/* In the iothread */
static void chb_send(ColoHeartbeat *hb)
{
    uint8_t msg[CHB_MSG_LEN] = { 0 };
    uint16_t flags;
    int ret;

    qemu_mutex_lock(&hb->lock);
    chb_track_mode(hb);
    flags = hb->took_over ? CHB_FLAG_TOOK_OVER : 0;
    stl_be_p(msg, CHB_MAGIC);
    msg[4] = CHB_VERSION;
    msg[5] = CHB_TYPE_BEAT;
    stw_be_p(msg + 6, CHB_MSG_LEN);
    stq_be_p(msg + 8, hb->seq++);
    msg[16] = chb_mode_to_wire(hb->last_mode);
    msg[17] = chb_local_status();
    stw_be_p(msg + 18, flags);
    stl_be_p(msg + 20, hb->interval);
    if (!hb->connected) {
        qemu_mutex_unlock(&hb->lock);
        return;
    }
    qemu_mutex_unlock(&hb->lock);

    /* never blocks: a peer that does not read just misses heartbeats */
    ret = qemu_chr_fe_write(&hb->chr, msg, sizeof(msg));
    qemu_mutex_lock(&hb->lock);
    if (ret == sizeof(msg)) {
        hb->sent++;
    }
    qemu_mutex_unlock(&hb->lock);
}

typedef struct ChbAction {
    ColoHeartbeat *hb;
    ColoHeartbeatAction action;
} ChbAction;

/*
 * Switch every user-created object of QOM type @type off (status=off).
 * With @keep_delivering, a filter-redirector without an outdev stays on:
 * it only delivers what arrives on its indev (colo-compare's output).
 */
static void chb_filters_off(const char *type, bool keep_delivering)
{
    Object *objs = object_get_objects_root();
    ObjectPropertyIterator iter;
    ObjectProperty *prop;

    object_property_iter_init(&iter, objs);
    while ((prop = object_property_iter_next(&iter))) {
        g_autofree char *outdev = NULL;
        Object *o;

        if (!strstart(prop->type, "child<", NULL)) {
            continue;
        }
        o = object_resolve_path_component(objs, prop->name);
        if (!o || !object_dynamic_cast(o, type)) {
            continue;
        }
        if (keep_delivering && object_dynamic_cast(o, "filter-redirector")) {
            outdev = object_property_get_str(o, "outdev", NULL);
            if (!outdev || !*outdev) {
                continue;
            }
        }
        object_property_set_str(o, "status", "off", NULL);
    }
}

/*
 * A primary continuing alone: what "Primary failover" in
 * docs/system/qemu-colo.rst does, minus deleting objects: the NBD
 * connection to the secondary is yanked (so that nothing waits for it)
 * and the replication child leaves the quorum; the filters that fed
 * colo-compare are switched off, so the guest's output goes straight
 * to its netdev again.
 *
 * What colo-compare still holds is this guest's own output, waiting for
 * the gone secondary's copy.  The primary goes on from its own state, so
 * that output is exactly what its client must see: it is released now
 * (deleting the compare object in the documented procedure does the
 * same) through the redirector that delivers colo-compare's output,
 * which stays on for it.  Stranded there, it would reach the client only
 * when the guest retransmits it, after at least the 200 ms minimum RTO.
 */
static void chb_primary_alone(ColoHeartbeat *hb)
{
    GSList *links, *l;
    Error *release_err = NULL;

    links = colo_replication_links_cut();
    for (l = links; l; l = l->next) {
        ColoReplicationLink *r = l->data;
        Error *err = NULL;

        qmp_x_blockdev_change(r->quorum, r->child, NULL, &err);
        if (err) {
            warn_report("colo-heartbeat '%s': cannot remove replication "
                        "child '%s' of '%s': %s", chb_id(hb), r->child,
                        r->quorum, error_get_pretty(err));
            error_free(err);
        }
    }
    colo_replication_links_free(links);
    colo_notify_compares_event(NULL, COLO_EVENT_CHECKPOINT, &release_err);
    if (release_err) {
        warn_report("colo-heartbeat '%s': cannot release colo-compare's "
                    "packets: %s", chb_id(hb), error_get_pretty(release_err));
        error_free(release_err);
    }
    chb_filters_off("filter-mirror", false);
    chb_filters_off("filter-redirector", true);
}

/*
 * The survivor's side of the documented failover procedures, for what
 * QEMU can do by itself: the COLO failover (which yanks the COLO
 * channels); on a secondary the NBD server stopped and the redirectors
 * that fed the dead primary switched off, so that the guest's replies
 * reach its netdev again; on a primary, chb_primary_alone().
 */
static void chb_failover(ColoHeartbeat *hb)
{
    COLOMode mode = chb_colo_mode();
    Error *err = NULL;

    if (mode == COLO_MODE_NONE) {
        return;                 /* another path already did it */
    }
    if (mode == COLO_MODE_SECONDARY && nbd_server_is_running()) {
        qmp_nbd_server_stop(&err);
        if (err) {
            warn_report_err(err);
            err = NULL;
        }
    }
    qmp_x_colo_lost_heartbeat(&err);
    if (err) {
        warn_report("colo-heartbeat '%s': failover: %s", chb_id(hb),
                    error_get_pretty(err));
        error_free(err);
        return;
    }
    if (mode == COLO_MODE_SECONDARY) {
        /*
         * What the COLO failover notifies anyway, once its bottom half
         * runs: the redirectors resend what the dead primary's
         * colo-compare held (net/colo-resend.c) and switch off before
         * the guest's next frames go out past them.
         */
        colo_notify_filters_event(COLO_EVENT_FAILOVER, &err);
        if (err) {
            warn_report("colo-heartbeat '%s': %s", chb_id(hb),
                        error_get_pretty(err));
            error_free(err);
            chb_filters_off("filter-redirector", false);
        }
    } else {
        chb_primary_alone(hb);
    }
}

/* Main loop, BQL held */
static void chb_act_bh(void *opaque)
{
    ChbAction *a = opaque;
    ColoHeartbeat *hb = a->hb;

    trace_colo_heartbeat_act(chb_id(hb), ColoHeartbeatAction_str(a->action));
    switch (a->action) {
    case COLO_HEARTBEAT_ACTION_FAILOVER:
        chb_failover(hb);
        break;
    case COLO_HEARTBEAT_ACTION_STAND_DOWN:
        if (!ha_quiesce_active()) {
            ha_quiesce_enter("colo-peer-took-over");
        }
        break;
    default:
        break;
    }
    object_unref(OBJECT(hb));
    g_free(a);
}

/*
 * Report a loss of the peer and decide what to do.  Called with
 * hb->lock held, in the iothread.
 */
static void chb_lost(ColoHeartbeat *hb, ColoHeartbeatLossReason reason)
{
    ColoHeartbeatAction action = COLO_HEARTBEAT_ACTION_NONE;
    bool automatic = hb->failover == COLO_HEARTBEAT_FAILOVER_AUTO;
    COLOMode mode = chb_colo_mode();
    int64_t now = chb_now();
    uint64_t silence = hb->ever_seen ? now - hb->last_rx_ms : 0;

    switch (reason) {
    case COLO_HEARTBEAT_LOSS_REASON_PEER_EXIT:
    case COLO_HEARTBEAT_LOSS_REASON_PEER_FAILOVER_SAFE:
        /* Rules 1 and 4: unambiguous, act at once */
        if (mode != COLO_MODE_NONE && !ha_quiesce_active()) {
            action = automatic ? COLO_HEARTBEAT_ACTION_FAILOVER
                               : COLO_HEARTBEAT_ACTION_NONE;
        } else if (hb->last_mode != COLO_MODE_NONE && chb_failover_started()) {
            action = COLO_HEARTBEAT_ACTION_FAILOVER;
        }
        break;
    case COLO_HEARTBEAT_LOSS_REASON_PEER_TOOK_OVER:
        /* Rule 3: never two primaries */
        if ((mode != COLO_MODE_NONE || hb->took_over) &&
            !ha_quiesce_active() && automatic) {
            action = COLO_HEARTBEAT_ACTION_STAND_DOWN;
        }
        break;
    default:
        /*
         * Rule 2: silence never acts.  A primary's output waits, though:
         * its secondary may already serve (colo_compare_hold_output()).
         */
        if (mode == COLO_MODE_PRIMARY) {
            colo_compare_hold_output(true);
        }
        break;
    }

    if (!hb->lost) {
        hb->lost_since_ms = hb->ever_seen ? hb->last_rx_ms : now;
    }
    hb->lost = true;
    hb->lost_reason = reason;
    trace_colo_heartbeat_lost(chb_id(hb),
                              ColoHeartbeatLossReason_str(reason), silence,
                              ColoHeartbeatAction_str(action));
    qapi_event_send_colo_heartbeat_lost(chb_id(hb), reason, silence, action);

    if (action != COLO_HEARTBEAT_ACTION_NONE &&
        !(action == COLO_HEARTBEAT_ACTION_FAILOVER &&
          mode == COLO_MODE_NONE)) {
        ChbAction *a = g_new0(ChbAction, 1);

        a->hb = hb;
        a->action = action;
        object_ref(OBJECT(hb));
        aio_bh_schedule_oneshot(qemu_get_aio_context(), chb_act_bh, a);
    }
}

/* One valid message: called with hb->lock held, in the iothread */
static void chb_handle(ColoHeartbeat *hb, const uint8_t *msg)
{
    int64_t now = chb_now();
    uint8_t mode = msg[16], status = msg[17];
    uint16_t flags = lduw_be_p(msg + 18);
    bool was_failover_safe = hb->peer_status ==
                             COLO_HEARTBEAT_PEER_STATUS_FAILOVER_SAFE;

    /*
     * A loss ends when the peer is heard again after silence or its
     * exit, and also when the news that made it is over: a peer that
     * took over and was protected again (the flag cleared), or a new
     * process on the peer's side that is not frozen.  Without this a
     * fresh secondary that met its peer's "took over" flag (action
     * none) stayed lost for ever, and CHR_EVENT_CLOSED then ignored the
     * peer's exit: no automatic failover after any resume.
     */
    if (hb->lost &&
        (hb->lost_reason == COLO_HEARTBEAT_LOSS_REASON_SILENCE ||
         hb->lost_reason == COLO_HEARTBEAT_LOSS_REASON_PEER_EXIT ||
         (hb->lost_reason == COLO_HEARTBEAT_LOSS_REASON_PEER_TOOK_OVER &&
          !(flags & CHB_FLAG_TOOK_OVER)) ||
         (hb->lost_reason == COLO_HEARTBEAT_LOSS_REASON_PEER_FAILOVER_SAFE &&
          status != CHB_STATUS_FAILOVER_SAFE))) {
        uint64_t lost_ms = now - hb->lost_since_ms;

        hb->lost = false;
        trace_colo_heartbeat_restored(chb_id(hb), lost_ms);
        qapi_event_send_colo_heartbeat_restored(chb_id(hb), lost_ms);
        /*
         * A message is no proof that the peer is still the secondary (it
         * may have been queued before the peer took over); a checkpoint
         * it receives is, and ends the hold on the output: have one now.
         */
        if (!(flags & CHB_FLAG_TOOK_OVER) &&
            chb_colo_mode() == COLO_MODE_PRIMARY) {
            colo_checkpoint_delay_set();
        }
    }
    hb->conn_valid = true;
    hb->peer_alive = true;
    hb->ever_seen = true;
    hb->last_rx_ms = now;
    hb->received++;
    hb->peer_mode = mode == CHB_MODE_PRIMARY ? COLO_MODE_PRIMARY :
                    mode == CHB_MODE_SECONDARY ? COLO_MODE_SECONDARY :
                    COLO_MODE_NONE;
    hb->peer_status = status == CHB_STATUS_RUNNING ?
                      COLO_HEARTBEAT_PEER_STATUS_RUNNING :
                      status == CHB_STATUS_FAILOVER_SAFE ?
                      COLO_HEARTBEAT_PEER_STATUS_FAILOVER_SAFE :
                      COLO_HEARTBEAT_PEER_STATUS_STOPPED;

    if (hb->peer_status == COLO_HEARTBEAT_PEER_STATUS_FAILOVER_SAFE &&
        !was_failover_safe) {
        chb_lost(hb, COLO_HEARTBEAT_LOSS_REASON_PEER_FAILOVER_SAFE);
    }
    if ((flags & CHB_FLAG_TOOK_OVER) && !hb->peer_took_over) {
        hb->peer_took_over = true;
        chb_lost(hb, COLO_HEARTBEAT_LOSS_REASON_PEER_TOOK_OVER);
    } else if (!(flags & CHB_FLAG_TOOK_OVER)) {
        hb->peer_took_over = false;
    }
}

/* A refused message: counted and logged, never a sign of life */
static void chb_protocol_error(ColoHeartbeat *hb, const char *what)
{
    hb->errors++;
    trace_colo_heartbeat_protocol_error(chb_id(hb), what);
    if (hb->errors == 1 || !(hb->errors % 1000)) {
        warn_report("colo-heartbeat '%s': protocol error from the peer: %s "
                    "(%" PRIu64 " so far)", chb_id(hb), what, hb->errors);
    }
}

static int chb_can_read(void *opaque)
{
    ColoHeartbeat *hb = opaque;

    return sizeof(hb->buf) - hb->buflen;
}

/* In the iothread */
static void chb_read(void *opaque, const uint8_t *buf, int size)
{
    ColoHeartbeat *hb = opaque;
    size_t off = 0;

    assert(hb->buflen + size <= sizeof(hb->buf));
    memcpy(hb->buf + hb->buflen, buf, size);
    hb->buflen += size;

    qemu_mutex_lock(&hb->lock);
    while (hb->buflen - off >= 8) {
        const uint8_t *msg = hb->buf + off;
        uint16_t len = lduw_be_p(msg + 6);

        if (ldl_be_p(msg) != CHB_MAGIC) {
            /* garbage: drop it all, resynchronise on the next message */
            chb_protocol_error(hb, "bad magic");
            off = hb->buflen;
            break;
        }
        if (len < 8 || len > CHB_MAX_LEN) {
            chb_protocol_error(hb, "bad length");
            off = hb->buflen;
            break;
        }
        if (hb->buflen - off < len) {
            break;
        }
        if (msg[4] != CHB_VERSION) {
            chb_protocol_error(hb, "unsupported version");
        } else if (msg[5] != CHB_TYPE_BEAT || len < CHB_MSG_LEN) {
            chb_protocol_error(hb, "unknown message type or short message");
        } else {
            chb_handle(hb, msg);
        }
        off += len;
    }
    qemu_mutex_unlock(&hb->lock);
    memmove(hb->buf, hb->buf + off, hb->buflen - off);
    hb->buflen -= off;
}

/* In the iothread */
static void chb_event(void *opaque, QEMUChrEvent event)
{
    ColoHeartbeat *hb = opaque;
    bool send = false;

    qemu_mutex_lock(&hb->lock);
    switch (event) {
    case CHR_EVENT_OPENED:
        trace_colo_heartbeat_connected(chb_id(hb), true);
        hb->connected = true;
        hb->conn_valid = false;
        hb->buflen = 0;
        send = true;
        break;
    case CHR_EVENT_CLOSED:
        trace_colo_heartbeat_connected(chb_id(hb), false);
        hb->connected = false;
        hb->buflen = 0;
        /*
         * Rule 1: a connection that carried valid messages and then
         * closed means the peer's process ended (its kernel closed the
         * socket).  A cut link or a stopped peer closes nothing.
         */
        if (hb->conn_valid && !(hb->lost && hb->lost_reason !=
                                COLO_HEARTBEAT_LOSS_REASON_SILENCE)) {
            hb->peer_alive = false;
            chb_lost(hb, COLO_HEARTBEAT_LOSS_REASON_PEER_EXIT);
        }
        hb->conn_valid = false;
        break;
    default:
        break;
    }
    qemu_mutex_unlock(&hb->lock);
    if (send) {
        chb_send(hb);
    }
}

/* Every interval, in the iothread */
static void chb_tick(void *opaque)
{
    ColoHeartbeat *hb = opaque;
    int64_t now = chb_now();
    bool late;

    chb_send(hb);

    qemu_mutex_lock(&hb->lock);
    /*
     * Rule 2: silence is reported, never acted upon.  A tick that comes
     * late (this process was stopped, or its host starved it) first
     * gives the peer's queued messages a chance to be read.
     */
    late = now - hb->last_tick_ms > hb->timeout / 2;
    hb->last_tick_ms = now;
    if (hb->peer_alive && !late && now - hb->last_rx_ms > hb->timeout) {
        hb->peer_alive = false;
        if (!hb->lost) {
            chb_lost(hb, COLO_HEARTBEAT_LOSS_REASON_SILENCE);
        }
    }
    qemu_mutex_unlock(&hb->lock);
    timer_mod(hb->timer, now + hb->interval);
}

/* In the iothread: send at once (this side's state changed) */
static void chb_send_now_bh(void *opaque)
{
    ColoHeartbeat *hb = opaque;

    chb_send(hb);
    object_unref(OBJECT(hb));
}

/*
 * Rule 4: entering failover-safe is news for the peer; tell it now
 * rather than at the next tick.
 */
static void chb_vm_state_change(void *opaque, bool running, RunState state)
{
    ColoHeartbeat *hb = opaque;

    if (state == RUN_STATE_FAILOVER_SAFE || ha_quiesce_active()) {
        object_ref(OBJECT(hb));
        aio_bh_schedule_oneshot(hb->ctx, chb_send_now_bh, hb);
    }
}

static void chb_start_bh(void *opaque)
{
    ColoHeartbeat *hb = opaque;

    hb->last_tick_ms = chb_now();
    timer_mod(hb->timer, chb_now() + hb->interval);
    object_unref(OBJECT(hb));
}

/* Main loop: the migration state exists now; start ticking */
static void chb_main_loop_bh(void *opaque)
{
    ColoHeartbeat *hb = opaque;

    qatomic_set(&chb_main_loop_running, true);
    aio_bh_schedule_oneshot(hb->ctx, chb_start_bh, hb);
}

static void colo_heartbeat_complete(UserCreatable *uc, Error **errp)
{
    ColoHeartbeat *hb = COLO_HEARTBEAT(uc);
    ColoHeartbeat *other;
    Chardev *chr;
    GMainContext *gctx;

    hb->id = g_strdup(object_get_canonical_path_component(OBJECT(hb)));
    if (!hb->chardev) {
        error_setg(errp, "colo-heartbeat '%s': property 'chardev' is "
                   "required", chb_id(hb));
        return;
    }
    if (!hb->interval) {
        error_setg(errp, "colo-heartbeat '%s': 'interval' must be at least "
                   "1 ms", chb_id(hb));
        return;
    }
    if ((uint64_t)hb->timeout <= 2 * (uint64_t)hb->interval) {
        error_setg(errp, "colo-heartbeat '%s': 'timeout' (%" PRIu32 " ms) "
                   "must be more than twice 'interval' (%" PRIu32 " ms)",
                   chb_id(hb), hb->timeout, hb->interval);
        return;
    }
    chr = qemu_chr_find(hb->chardev);
    if (!chr) {
        error_setg(errp, "colo-heartbeat '%s': chardev '%s' not found",
                   chb_id(hb), hb->chardev);
        return;
    }
    if (!object_dynamic_cast(OBJECT(chr), TYPE_CHARDEV_SOCKET)) {
        error_setg(errp, "colo-heartbeat '%s': chardev '%s' is not a "
                   "socket chardev", chb_id(hb), hb->chardev);
        return;
    }
    qemu_mutex_lock(&colo_heartbeats_lock);
    QTAILQ_FOREACH(other, &colo_heartbeats, next) {
        if (!strcmp(other->chardev, hb->chardev)) {
            error_setg(errp, "colo-heartbeat '%s': chardev '%s' is already "
                       "used by colo-heartbeat '%s'", chb_id(hb),
                       hb->chardev, chb_id(other));
            qemu_mutex_unlock(&colo_heartbeats_lock);
            return;
        }
    }
    qemu_mutex_unlock(&colo_heartbeats_lock);

    if (hb->iothread_id) {
        hb->iothread = iothread_by_id(hb->iothread_id);
        if (!hb->iothread) {
            error_setg(errp, "colo-heartbeat '%s': iothread '%s' not found",
                       chb_id(hb), hb->iothread_id);
            return;
        }
        object_ref(OBJECT(hb->iothread));
    } else {
        g_autofree char *name = g_strdup_printf("colo-heartbeat-%s",
                                                chb_id(hb));

        hb->iothread = iothread_create(name, errp);
        if (!hb->iothread) {
            return;
        }
        hb->own_iothread = true;
    }
    if (!qemu_chr_fe_init(&hb->chr, chr, errp)) {
        goto fail;
    }
    /*
     * Keep the chardev until this object is finalized: at exit the
     * chardevs are destroyed before the objects, and this object's
     * iothread could still be writing to it (or see it close and take
     * that for the peer's exit).
     */
    hb->chardev_obj = chr;
    object_ref(OBJECT(chr));

    hb->ctx = iothread_get_aio_context(hb->iothread);
    gctx = iothread_get_g_main_context(hb->iothread);
    hb->timer = aio_timer_new(hb->ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                              chb_tick, hb);
    hb->complete = true;

    qemu_mutex_lock(&colo_heartbeats_lock);
    QTAILQ_INSERT_TAIL(&colo_heartbeats, hb, next);
    qemu_mutex_unlock(&colo_heartbeats_lock);

    hb->vmstate = qemu_add_vm_change_state_handler(chb_vm_state_change, hb);
    qemu_chr_fe_set_handlers(&hb->chr, chb_can_read, chb_read, chb_event,
                             NULL, hb, gctx, true);
    object_ref(OBJECT(hb));     /* until chb_start_bh() */
    aio_bh_schedule_oneshot(qemu_get_aio_context(), chb_main_loop_bh, hb);
    trace_colo_heartbeat_start(chb_id(hb), hb->chardev, hb->interval,
                               hb->timeout);
    return;

fail:
    if (hb->own_iothread) {
        iothread_destroy(hb->iothread);
    } else {
        object_unref(OBJECT(hb->iothread));
    }
    hb->iothread = NULL;
}

static bool colo_heartbeat_can_be_deleted(UserCreatable *uc)
{
    return true;
}

static void chb_stop_bh(void *opaque)
{
    ColoHeartbeat *hb = opaque;

    timer_del(hb->timer);
}

static void colo_heartbeat_finalize(Object *obj)
{
    ColoHeartbeat *hb = COLO_HEARTBEAT(obj);

    if (hb->complete) {
        /* nobody would end a hold this object started */
        colo_compare_hold_output(false);
        qemu_mutex_lock(&colo_heartbeats_lock);
        QTAILQ_REMOVE(&colo_heartbeats, hb, next);
        qemu_mutex_unlock(&colo_heartbeats_lock);
        qemu_del_vm_change_state_handler(hb->vmstate);
        qemu_chr_fe_set_handlers(&hb->chr, NULL, NULL, NULL, NULL, NULL,
                                 NULL, true);
        aio_wait_bh_oneshot(hb->ctx, chb_stop_bh, hb);
        timer_free(hb->timer);
        qemu_chr_fe_deinit(&hb->chr, false);
        object_unref(OBJECT(hb->chardev_obj));
        if (hb->own_iothread) {
            iothread_destroy(hb->iothread);
        } else {
            object_unref(OBJECT(hb->iothread));
        }
    }
    qemu_mutex_destroy(&hb->lock);
    g_free(hb->chardev);
    g_free(hb->iothread_id);
    g_free(hb->id);
}

static void colo_heartbeat_instance_init(Object *obj)
{
    ColoHeartbeat *hb = COLO_HEARTBEAT(obj);

    qemu_mutex_init(&hb->lock);
    hb->interval = CHB_DEFAULT_INTERVAL;
    hb->timeout = CHB_DEFAULT_TIMEOUT;
    hb->failover = COLO_HEARTBEAT_FAILOVER_AUTO;
    hb->peer_status = COLO_HEARTBEAT_PEER_STATUS_UNKNOWN;
}

static bool chb_check_not_started(ColoHeartbeat *hb, const char *name,
                                  Error **errp)
{
    if (hb->complete) {
        error_setg(errp, "colo-heartbeat '%s': '%s' cannot be changed once "
                   "the object runs", chb_id(hb), name);
        return false;
    }
    return true;
}

static char *chb_get_chardev(Object *obj, Error **errp)
{
    return g_strdup(COLO_HEARTBEAT(obj)->chardev);
}

static void chb_set_chardev(Object *obj, const char *value, Error **errp)
{
    ColoHeartbeat *hb = COLO_HEARTBEAT(obj);

    if (chb_check_not_started(hb, "chardev", errp)) {
        g_free(hb->chardev);
        hb->chardev = g_strdup(value);
    }
}

static char *chb_get_iothread(Object *obj, Error **errp)
{
    return g_strdup(COLO_HEARTBEAT(obj)->iothread_id);
}

static void chb_set_iothread(Object *obj, const char *value, Error **errp)
{
    ColoHeartbeat *hb = COLO_HEARTBEAT(obj);

    if (chb_check_not_started(hb, "iothread", errp)) {
        g_free(hb->iothread_id);
        hb->iothread_id = g_strdup(value);
    }
}

static void chb_get_u32(Object *obj, Visitor *v, const char *name,
                        void *opaque, Error **errp)
{
    ColoHeartbeat *hb = COLO_HEARTBEAT(obj);
    uint32_t value = !strcmp(name, "interval") ? hb->interval : hb->timeout;

    visit_type_uint32(v, name, &value, errp);
}

static void chb_set_u32(Object *obj, Visitor *v, const char *name,
                        void *opaque, Error **errp)
{
    ColoHeartbeat *hb = COLO_HEARTBEAT(obj);
    uint32_t value;

    if (!chb_check_not_started(hb, name, errp) ||
        !visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    if (!strcmp(name, "interval")) {
        hb->interval = value;
    } else {
        hb->timeout = value;
    }
}

static int chb_get_failover(Object *obj, Error **errp)
{
    return COLO_HEARTBEAT(obj)->failover;
}

/* May change while the object runs: a manager may take the wheel */
static void chb_set_failover(Object *obj, int value, Error **errp)
{
    ColoHeartbeat *hb = COLO_HEARTBEAT(obj);

    qemu_mutex_lock(&hb->lock);
    hb->failover = value;
    qemu_mutex_unlock(&hb->lock);
}

static void colo_heartbeat_class_init(ObjectClass *oc, const void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(oc);

    ucc->complete = colo_heartbeat_complete;
    ucc->can_be_deleted = colo_heartbeat_can_be_deleted;

    object_class_property_add_str(oc, "chardev", chb_get_chardev,
                                  chb_set_chardev);
    object_class_property_add(oc, "interval", "uint32", chb_get_u32,
                              chb_set_u32, NULL, NULL);
    object_class_property_add(oc, "timeout", "uint32", chb_get_u32,
                              chb_set_u32, NULL, NULL);
    object_class_property_add_enum(oc, "failover", "ColoHeartbeatFailover",
                                   &ColoHeartbeatFailover_lookup,
                                   chb_get_failover, chb_set_failover);
    object_class_property_add_str(oc, "iothread", chb_get_iothread,
                                  chb_set_iothread);
}

static const TypeInfo colo_heartbeat_info = {
    .name = TYPE_COLO_HEARTBEAT,
    .parent = TYPE_OBJECT,
    .instance_size = sizeof(ColoHeartbeat),
    .instance_init = colo_heartbeat_instance_init,
    .instance_finalize = colo_heartbeat_finalize,
    .class_init = colo_heartbeat_class_init,
    .interfaces = (const InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { }
    },
};

static void colo_heartbeat_register_types(void)
{
    type_register_static(&colo_heartbeat_info);
}

type_init(colo_heartbeat_register_types);

/* May run out of band: only the objects' own locks are taken */
ColoHeartbeatInfoList *qmp_query_colo_heartbeat(Error **errp)
{
    ColoHeartbeatInfoList *list = NULL, **tail = &list;
    ColoHeartbeat *hb;
    int64_t now = chb_now();

    qemu_mutex_lock(&colo_heartbeats_lock);
    QTAILQ_FOREACH(hb, &colo_heartbeats, next) {
        ColoHeartbeatInfo *info = g_new0(ColoHeartbeatInfo, 1);

        qemu_mutex_lock(&hb->lock);
        info->id = g_strdup(chb_id(hb));
        info->connected = hb->connected;
        info->peer_alive = hb->peer_alive;
        info->has_last_seen_ms = hb->ever_seen;
        info->last_seen_ms = hb->ever_seen ? now - hb->last_rx_ms : 0;
        info->interval = hb->interval;
        info->timeout = hb->timeout;
        info->failover = hb->failover;
        info->peer_mode = hb->peer_mode;
        info->peer_status = hb->peer_status;
        info->sent = hb->sent;
        info->received = hb->received;
        info->protocol_errors = hb->errors;
        qemu_mutex_unlock(&hb->lock);
        QAPI_LIST_APPEND(tail, info);
    }
    qemu_mutex_unlock(&colo_heartbeats_lock);
    return list;
}

void hmp_info_colo_heartbeat(Monitor *mon, const QDict *qdict)
{
    g_autoptr(ColoHeartbeatInfoList) list = qmp_query_colo_heartbeat(NULL);
    ColoHeartbeatInfoList *l;

    if (!list) {
        monitor_printf(mon, "no colo-heartbeat object\n");
        return;
    }
    for (l = list; l; l = l->next) {
        ColoHeartbeatInfo *i = l->value;

        monitor_printf(mon, "%s: %s, peer %s (mode %s, %s)",
                       i->id, i->connected ? "connected" : "not connected",
                       i->peer_alive ? "alive" : "not alive",
                       COLOMode_str(i->peer_mode),
                       ColoHeartbeatPeerStatus_str(i->peer_status));
        if (i->has_last_seen_ms) {
            monitor_printf(mon, ", last seen %" PRIu64 " ms ago",
                           i->last_seen_ms);
        }
        monitor_printf(mon, "\n  interval %" PRIu32 " ms, timeout %" PRIu32
                       " ms, failover %s; sent %" PRIu64 ", received %"
                       PRIu64 ", protocol errors %" PRIu64 "\n",
                       i->interval, i->timeout,
                       ColoHeartbeatFailover_str(i->failover), i->sent,
                       i->received, i->protocol_errors);
    }
}
