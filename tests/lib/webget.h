/*
 * webget: the test side of the supervisor's HTTP endpoints: a free
 * loopback port to give it, one HTTP/1.0 request over a real TCP
 * connection (no curl needed), and a value read from a Prometheus text
 * page.  Failing calls return -1 with harness_err() set.
 */
#ifndef WEBGET_H
#define WEBGET_H

#include <stddef.h>
#include <stdint.h>

/* A loopback TCP port free right now (the kernel's pick); -1 on error. */
int webget_free_port(void);

struct webget_reply {
	int status;           /* 200, 404, ... */
	char *head;           /* status line and headers, NUL-terminated (malloc'd) */
	char *body;           /* NUL-terminated (malloc'd) */
	size_t body_len;
};

/* METHOD path to 127.0.0.1:port; the whole reply within timeout_ms. */
int webget(int port, const char *method, const char *path, int64_t timeout_ms, struct webget_reply *r);
void webget_free(struct webget_reply *r);

/*
 * The value of the sample whose name and labels are exactly `series`
 * (`name` or `name{k="v"}`) on a /metrics page; -1 if there is none.
 */
int webget_metric(const char *page, const char *series, double *v);

#endif
