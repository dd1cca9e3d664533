/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: test-only injection of hardware errors
 *
 * x-inject-memory-failure raises a real SIGBUS in-process (the kernel here
 * has no memory-failure support), so that the real handler path runs;
 * x-inject-internal-error runs, on the thread of vCPU 0, the function KVM
 * calls when KVM_RUN fails; x-memory-failure-on-bus-adrerr lets a test
 * make the guest's own access fault for real.  Linux only.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include <sys/syscall.h>
#include "qapi/error.h"
#include "qapi/qapi-commands-ha-quiesce.h"
#include "qemu/error-report.h"
#include "qemu/notify.h"
#include "exec/cpu-common.h"
#include "hw/core/cpu.h"
#include "system/memory.h"
#include "system/hostmem.h"
#include "system/kvm.h"
#include "system/tcg.h"
#include "system/address-spaces.h"
#include "system/ha-quiesce.h"
#include "ha-quiesce-int.h"
#include "trace.h"

static int ha_send_sigbus(uintptr_t host, bool action_required)
{
    siginfo_t info;
    int ret;

    memset(&info, 0, sizeof(info));
    info.si_signo = SIGBUS;
    info.si_code = action_required ? BUS_MCEERR_AR : BUS_MCEERR_AO;
    info.si_addr = (void *)host;
    info.si_addr_lsb = ctz64(qemu_real_host_page_size());
    /*
     * The kernel only lets a thread queue a positive si_code to itself,
     * so the target thread sends it.  The signal is delivered before
     * the syscall returns; the flag tells the handler that no access
     * faulted (there is no guest code to leave).
     */
    ha_sigbus_injecting = true;
    ret = syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid),
                  SIGBUS, &info);
    ha_sigbus_injecting = false;
    return ret;
}

static void ha_sigbus_on_vcpu(CPUState *cpu, run_on_cpu_data data)
{
    if (ha_send_sigbus(data.host_ulong, true) < 0) {
        error_report("x-inject-memory-failure: rt_tgsigqueueinfo: %s",
                     strerror(errno));
    }
}

/* Raise the SIGBUS of an injected failure on the right thread */
static void ha_inject_sigbus(uintptr_t host, bool action_required)
{
    if (action_required) {
        /* BUS_MCEERR_AR on the thread of vCPU 0, between two TBs/runs */
        async_run_on_cpu(first_cpu, ha_sigbus_on_vcpu,
                         RUN_ON_CPU_HOST_ULONG(host));
    } else if (ha_send_sigbus(host, false) < 0) {
        /* BUS_MCEERR_AO on the main thread, taken through signalfd */
        error_report("x-inject-memory-failure: rt_tgsigqueueinfo: %s",
                     strerror(errno));
    }
}

/* A failure held back until the next freeze starts (test only) */
typedef struct HaDeferredSigbus {
    Notifier notifier;
    uintptr_t host;
    bool action_required;
} HaDeferredSigbus;

static void ha_deferred_sigbus(Notifier *n, void *data)
{
    HaDeferredSigbus *d = container_of(n, HaDeferredSigbus, notifier);

    notifier_remove(n);
    ha_inject_sigbus(d->host, d->action_required);
    g_free(d);
}

/* Host address of the guest page at @address (page aligned, guest RAM) */
static bool ha_inject_host_addr(uint64_t address, uintptr_t *host,
                                Error **errp)
{
    MemoryRegionSection mrs;

    mrs = memory_region_find(get_system_memory(), address, 1);
    if (!mrs.mr || !memory_region_is_ram(mrs.mr) ||
        memory_region_is_ram_device(mrs.mr) || memory_region_is_rom(mrs.mr)) {
        if (mrs.mr) {
            memory_region_unref(mrs.mr);
        }
        error_setg(errp, "address 0x%" PRIx64 " is not in guest RAM",
                   address);
        return false;
    }
    *host = (uintptr_t)memory_region_get_ram_ptr(mrs.mr) +
            mrs.offset_within_region;
    memory_region_unref(mrs.mr);
    return true;
}

/* Host address of offset @address of memory backend @memdev */
static bool ha_inject_memdev_addr(const char *memdev, uint64_t address,
                                  uintptr_t *host, Error **errp)
{
    Object *obj = object_resolve_path_component(object_get_objects_root(),
                                                memdev);
    HostMemoryBackend *backend = (HostMemoryBackend *)
        object_dynamic_cast(obj, TYPE_MEMORY_BACKEND);
    MemoryRegion *mr;

    if (!backend) {
        error_setg(errp, "'%s' is not a memory backend", memdev);
        return false;
    }
    mr = host_memory_backend_get_memory(backend);
    if (!mr || !memory_region_is_ram(mr) ||
        address >= memory_region_size(mr)) {
        error_setg(errp, "offset 0x%" PRIx64 " is not in memory backend "
                   "'%s'", address, memdev);
        return false;
    }
    *host = (uintptr_t)memory_region_get_ram_ptr(mr) + address;
    return true;
}

InjectedMemoryFailure *qmp_x_inject_memory_failure(uint64_t address,
                                                   bool action_required,
                                                   bool has_during_freeze,
                                                   bool during_freeze,
                                                   const char *memdev,
                                                   Error **errp)
{
    uint64_t psize = qemu_real_host_page_size();
    InjectedMemoryFailure *info;
    uintptr_t host;

    if (address & (psize - 1)) {
        error_setg(errp, "address 0x%" PRIx64 " is not aligned to the page "
                   "size (0x%" PRIx64 ")", address, psize);
        return NULL;
    }
    if (memdev ? !ha_inject_memdev_addr(memdev, address, &host, errp) :
        !ha_inject_host_addr(address, &host, errp)) {
        return NULL;
    }

    if (action_required) {
        if (!tcg_enabled() && !kvm_enabled()) {
            error_setg(errp, "an action-required memory failure needs a "
                       "vCPU thread running guest code (TCG or KVM)");
            return NULL;
        }
        if (!first_cpu || !first_cpu->thread_id) {
            error_setg(errp, "no vCPU thread");
            return NULL;
        }
    }

    if (!memdev) {
        /* lets the signal handler find the guest address */
        ha_poison_add(host, address);
    }
    trace_ha_inject_memory_failure(address, (void *)host,
                                   action_required ? first_cpu->thread_id :
                                   getpid(), action_required);
    info = g_new0(InjectedMemoryFailure, 1);
    if (has_during_freeze && during_freeze) {
        HaDeferredSigbus *d = g_new0(HaDeferredSigbus, 1);

        d->notifier.notify = ha_deferred_sigbus;
        d->host = host;
        d->action_required = action_required;
        ha_quiesce_add_notifier(&d->notifier);
        return info;
    }
    if (!action_required) {
        info->has_sent_us = true;
        info->sent_us = g_get_monotonic_time();
    }
    ha_inject_sigbus(host, action_required);
    return info;
}

static void ha_internal_error_on_vcpu(CPUState *cpu, run_on_cpu_data data)
{
    /* what kvm_cpu_exec() does when KVM_RUN fails */
    ha_hardware_error_internal(cpu);
}

void qmp_x_inject_internal_error(Error **errp)
{
    if (!first_cpu || !first_cpu->thread_id) {
        error_setg(errp, "no vCPU thread");
        return;
    }
    async_run_on_cpu(first_cpu, ha_internal_error_on_vcpu,
                     RUN_ON_CPU_NULL);
}

void qmp_x_memory_failure_on_bus_adrerr(bool enable, Error **errp)
{
    qatomic_set(&ha_test_adrerr_is_memory_failure, enable);
}
