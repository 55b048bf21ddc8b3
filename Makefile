# alarm-digest: build, test, run, bench.  See README.md.
#
#   make            build build/alarm-supervisor and build/alarmctl
#   make run        install missing Debian packages, start a local nats-server
#                   if none is reachable, run the service in the foreground
#   make test       install missing packages, run the whole suite twice:
#                   plain and under ASan+UBSan
#   make bench      benchmarks (prints figures; never pass/fail on speed)
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (default 60)
#   make check-fuzz run each for 6 s under ASan+UBSan; fails on any finding
#   make install    PREFIX (default /usr/local) and DESTDIR; make uninstall
#   make deb        build the Debian package into $(BUILD)/deb/ (README.md, "Install")

CC      ?= cc
BUILD   ?= build
PKGS     = libnats json-c uuid lmdb libbsd inih libcrypto libmicrohttpd
# The service's own sources include each other by relative path ("../common/x.h"), so a
# role's folder reaching into another's shows in its #include lines; only tests and bench
# get the folders on the include path.
CPPFLAGS = -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
TEST_CPPFLAGS = -Icommon -Iworker -Isupervisor -Ireshard
# Set only by `make check-broken` (a test-only build that must fail the fault suite).
CPPFLAGS += $(BREAK_DEFS)
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -Werror -pthread
LDLIBS   = -lnats -ljson-c -luuid -llmdb -lbsd -linih -lcrypto -lmicrohttpd -lpthread

ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

SRCS      = $(wildcard cmd/*.c common/*.c supervisor/*.c worker/*.c reshard/*.c)
OBJS      = $(SRCS:%.c=$(BUILD)/%.o)
LIBOBJS   = $(filter-out $(BUILD)/cmd/%,$(OBJS))
# alarmctl, the operator's tool: its own folder, linked with common/ only.
CTL_SRCS  = $(wildcard ctl/*.c)
CTL_OBJS  = $(CTL_SRCS:%.c=$(BUILD)/%.o)
COMMON_OBJS = $(filter $(BUILD)/common/%,$(OBJS))
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
ITEST_SRCS = $(wildcard tests/integration/*.c)
ITEST_OBJS = $(ITEST_SRCS:%.c=$(BUILD)/%.o)
BENCH_SRCS = $(wildcard bench/*.c)
BENCH_BINS = $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
BENCH_LIB_SRCS = $(wildcard bench/lib/*.c)
BENCH_LIB_OBJS = $(BENCH_LIB_SRCS:%.c=$(BUILD)/%.o)
# Shared test helpers (harness, bus, SPEC model, traffic, TAP): itest, faulttest and bench link them.
TESTLIB_SRCS = $(wildcard tests/lib/*.c)
TESTLIB_OBJS = $(TESTLIB_SRCS:%.c=$(BUILD)/%.o)
FAULT_SRCS = $(wildcard tests/fault/*.c)
FAULT_OBJS = $(FAULT_SRCS:%.c=$(BUILD)/%.o)
# Objects, and their intermediates, are kept between runs: make would otherwise delete them.
.SECONDARY:

.PHONY: all deps run test check check-unit check-integration check-broken bench clean \
	fuzz-build fuzz check-fuzz install uninstall deb deps-pkg
all: $(BUILD)/alarm-supervisor $(BUILD)/alarmctl

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%.o $(BUILD)/bench/%.o: CPPFLAGS += $(TEST_CPPFLAGS)

$(BUILD)/alarm-supervisor: $(OBJS)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/alarmctl: $(CTL_OBJS) $(COMMON_OBJS)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(LIBOBJS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
# The suite's JWT signer lives in tests/lib; its unit test links it.
$(BUILD)/tests/test_jwt: $(BUILD)/tests/lib/jwt.o
# The page cache test reads the kernel's write counter as the benchmark does.
$(BUILD)/tests/test_pcache: $(BUILD)/bench/lib/procinfo.o

$(BUILD)/tests/itest: $(ITEST_OBJS) $(TESTLIB_OBJS) $(LIBOBJS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BENCH_LIB_OBJS) $(TESTLIB_OBJS) $(LIBOBJS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/faulttest: $(FAULT_OBJS) $(TESTLIB_OBJS) $(LIBOBJS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	@scripts/deps.sh

run: deps all
	scripts/run.sh $(BUILD)/alarm-supervisor conf/alarm-supervisor.conf

# The whole suite, plain and sanitized.  This is what .ci/run runs.  Both
# builds run even when the first fails, and the last line counts the checks
# of both ("N passed, M failed"); a build that did not run counts as failed.
# scripts/check.sh ignores selection variables from the environment.
# Then check-broken proves the fault suite still catches a lost update (one check),
# and check-fuzz runs each libFuzzer target briefly under ASan+UBSan (one check each).
test: deps deps-pkg
	@rm -f build/plain/test-summary build/asan/test-summary build/broken/test-summary \
		build/fuzz/test-summary
	-$(MAKE) --no-print-directory check BUILD=build/plain
	-$(MAKE) --no-print-directory check BUILD=build/asan SANITIZE=1
	-$(MAKE) --no-print-directory check-broken
	-$(MAKE) --no-print-directory check-fuzz
	@scripts/summary.sh build/plain build/asan build/broken build/fuzz

# The packaging suite builds and installs its own non-sanitized binaries, so it tells the
# same under every build: only a plain check runs it.
check: $(BUILD)/alarm-supervisor $(BUILD)/alarmctl $(UNIT_BINS) $(BUILD)/tests/itest $(BUILD)/tests/faulttest
	@CHECK_PKG=$(if $(filter 1,$(SANITIZE)),no,yes) scripts/check.sh $(BUILD)

# Proof that the fault suite catches lost updates: in build/broken a worker reports a batch
# durable before committing it, and worker_kill9 must fail on the updates that loses.
# worker.o is removed first so it is always compiled with the flag.
check-broken:
	@rm -f build/broken/worker/worker.o
	@$(MAKE) --no-print-directory BUILD=build/broken BREAK_DEFS=-DALARM_FAULT_ACK_EARLY \
		build/broken/alarm-supervisor build/broken/tests/faulttest
	@scripts/check-broken.sh build/broken

bench: deps $(BUILD)/alarm-supervisor $(BENCH_BINS)
	@scripts/bench.sh $(BUILD)

# libFuzzer targets (fuzz/README.md): built with clang into their own tree, the
# service's sources instrumented (fuzzer-no-link) and put in an archive so each
# target links only the modules it reaches.
FUZZ_BUILD   = build/fuzz
FUZZ_CC      = clang
FUZZ_SECONDS ?= 60
FUZZ_SAN     = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  = -O1 -g -std=c11 -Wall -Wextra -Werror -pthread $(FUZZ_SAN)
FUZZ_TARGETS = fuzz_validate fuzz_rfc3339 fuzz_frame fuzz_record fuzz_config
FUZZ_BINS    = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
FUZZ_LIB_SRCS = $(wildcard common/*.c) tests/lib/model.c tests/lib/itmap.c
FUZZ_LIB_OBJS = $(FUZZ_LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o)

$(FUZZ_LIB_OBJS): $(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(FUZZ_CC) $(CPPFLAGS) $(TEST_CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
		-MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/libfuzzlib.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	@ar rcs $@ $^

$(FUZZ_BINS): $(FUZZ_BUILD)/%: fuzz/%.c $(FUZZ_BUILD)/libfuzzlib.a
	@echo "  LD      $@"
	@$(FUZZ_CC) $(CPPFLAGS) $(TEST_CPPFLAGS) -Itests/lib $(FUZZ_CFLAGS) -fsanitize=fuzzer \
		-MMD -MP -o $@ $< $(FUZZ_BUILD)/libfuzzlib.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: deps fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The short run make test does: 6 s per target (the committed corpus is replayed first), one check each in build/fuzz/test-summary.
check-fuzz: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) 6

# ---- install, uninstall, deb (README.md, "Install"; tests/pkg/check.sh checks all three) ----
# alarmctl goes to sbin next to the daemon: it reads the service's state
# directory (mode 0750, the service account's) and signals the supervisor,
# so it is an administrator's command, like its section-8 page.
PREFIX  ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/alarm-digest
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
INSTALL ?= install
UNIT_FILE = dist/alarm-supervisor.service
MAN8      = man/alarm-supervisor.8 man/alarmctl.8
MAN5      = man/alarm-supervisor.conf.5
# The unit's ExecStart=/ExecReload= name the programs by path: point them where they go.
UNIT_SED  = s,/[^[:space:]=]*/(alarm-supervisor|alarmctl)([[:space:]]|$$),$(SBINDIR)/\1\2,g

install: all
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -m 0755 $(BUILD)/alarm-supervisor $(BUILD)/alarmctl $(DESTDIR)$(SBINDIR)/
	$(INSTALL) -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 conf/alarm-supervisor.conf $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL) -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	sed -E '$(UNIT_SED)' $(UNIT_FILE) > $(DESTDIR)$(UNITDIR)/alarm-supervisor.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/alarm-supervisor.service
	$(INSTALL) -m 0644 dist/alarm-digest.sysusers $(DESTDIR)$(SYSUSERSDIR)/alarm-digest.conf

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/alarm-supervisor $(DESTDIR)$(SBINDIR)/alarmctl \
		$(DESTDIR)$(MANDIR)/man5/alarm-supervisor.conf.5 \
		$(DESTDIR)$(MANDIR)/man8/alarm-supervisor.8 $(DESTDIR)$(MANDIR)/man8/alarmctl.8 \
		$(DESTDIR)$(DOCDIR)/examples/alarm-supervisor.conf \
		$(DESTDIR)$(UNITDIR)/alarm-supervisor.service $(DESTDIR)$(SYSUSERSDIR)/alarm-digest.conf
	rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true

# The packaging tools are installed only for this (and make test): make run stays light.
deps-pkg:
	@scripts/deps.sh pkg

deb: deps-pkg
	@scripts/deb.sh $(BUILD)/deb

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(CTL_OBJS:.o=.d) $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%.d) $(ITEST_OBJS:.o=.d) \
	$(BENCH_SRCS:%.c=$(BUILD)/%.d) $(BENCH_LIB_OBJS:.o=.d) $(FAULT_OBJS:.o=.d) $(TESTLIB_OBJS:.o=.d) \
	$(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:=.d)
