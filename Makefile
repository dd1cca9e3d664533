# COLO-HA fork of QEMU: entry points.  See README.md.
#
#   make            prepare build/qemu, configure, build (installs nothing:
#                   it stops and says so when a package is missing)
#   make check      install deps, build, then run fork/check-suites; ends
#                   "N passed, N failed"
#   make check-full make check plus the longer runs of fork/check-suites-full
#   make check-one SUITE=name   one suite of fork/check-suites (substring)
#   make bench      benchmarks under bench/ (fork vs upstream)
#   make demo       install deps, build, then a new user's story with qemu-colo:
#                   check, start, protect, a client, kill -9 of the primary,
#                   failover, protect again, stop; draws the client's round
#                   trips (build/demo/*.png)
#   make demo-e2e   the end-to-end test's timeline (colo-e2e.py --demo)
#   make prepare    (re)prepare build/qemu from the pin + patches/ + overlay
#   make export-patches         regenerate patches/ from build/qemu's commits
#   make install    install the programs, qemu-colo and the docs into
#                   $(DESTDIR)$(PREFIX) (PREFIX=/usr/local), the OCF
#                   agents into $(DESTDIR)/usr/lib/ocf
#   make clean      remove build/ (the tarball and ccache stay cached)

TOP := $(CURDIR)
BUILD := $(TOP)/build/qemu/build
JOBS ?= $(shell nproc)

# ccache: paths are rewritten relative to the clone, so a fresh clone
# elsewhere reuses the cache.
export CCACHE_DIR ?= /var/cache/colo-ha-fork/ccache
export CCACHE_BASEDIR := $(TOP)
export CCACHE_NOHASHDIR := 1
export PATH := /usr/lib/ccache:$(PATH)

# Test binaries the check suites need besides the emulator and the tools.
TEST_TARGETS := $(shell sed -e 's/\#.*//' fork/check-suites 2>/dev/null | \
	awk '$$1 ~ /^qtest-/ { sub(/.*\//, "", $$1); print "tests/qtest/" $$1; next } \
	     $$1 ~ /^test-/ { print "tests/unit/" $$1 }')

.PHONY: all deps prepare configure build check check-full check-one bench \
	demo demo-e2e export-patches install clean

all: build

# Only the README's two commands (make check, make demo) install packages;
# every other target just checks that they are there.
INSTALL_GOALS := check check-full demo demo-e2e
ifneq ($(filter $(INSTALL_GOALS),$(MAKECMDGOALS)),)
deps:
	@fork/install-deps
else
deps:
	@fork/install-deps --check
endif

prepare: deps
	@fork/prepare

configure: prepare
	@fork/configure-qemu

# Only what the fork ships and tests need: `make -C build/qemu/build` would
# also build upstream's 200 unit tests and softfloat test suites.
PROGRAMS := qemu-system-x86_64 qemu-img qemu-io qemu-nbd

build: configure
	ninja -C $(BUILD) -j$(JOBS) $(PROGRAMS) $(TEST_TARGETS)
	$(MAKE) -C $(BUILD) --no-print-directory pc-bios/optionrom/all

check: build
	@fork/check

check-full: build
	@fork/check --full

check-one: build
	@test -n "$(SUITE)" || { echo "usage: make check-one SUITE=name" >&2; exit 2; }
	@fork/check $(SUITE)

bench: build
	@fork/build-upstream
	@bench/run

export-patches:
	@fork/export-patches

# qemu-colo on the annotated example pair (docs/system/colo-pair.toml) with
# the test guest and a client in network namespaces: check, start, protect,
# status, kill -9 of the primary, failover, protect again, stop; prints each
# step and the path of a picture of the client's round-trip times.  Needs
# root; leaves nothing running.
demo: build
	/usr/bin/python3 tests/colo/demo.py

# The end-to-end test as a timeline: checkpoints forced by differing
# replies, both failovers and resumes, a wrong-sized secondary, a cut link.
demo-e2e: build
	/usr/bin/python3 tests/colo/colo-e2e.py --demo

# The programs, qemu-colo, the docs and the Pacemaker agents; PREFIX and
# DESTDIR as usual; see fork/install.
install: build
	@PREFIX="$(or $(PREFIX),/usr/local)" DESTDIR="$(DESTDIR)" fork/install

clean:
	rm -rf build
