/*
 * title: what `ps` shows for each process, e.g.
 *   alarm-supervisor: master conf=conf/x.conf workers 4/4 ...
 *   alarm-supervisor: worker 2/4 users=... alarms=... msgs=...
 * (libbsd setproctitle).  Updates are cheap but not free: callers refresh
 * at most once a second.
 */
#ifndef TITLE_H
#define TITLE_H

/* Call first thing in main(), before argv is used elsewhere. */
void title_init(int argc, char *argv[]);
void title_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
