#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "../common/buf.h"
#include "../common/listen.h"
#include "../common/log.h"
#include "http.h"
#include "metrics.h"

/* A scraper that stalls must not keep a connection for long, nor many of them. */
#define HTTP_TIMEOUT_S 10
#define HTTP_MAX_CONNS 32
#define HTTP_TEXT "text/plain; charset=utf-8"

struct http {
	struct MHD_Daemon *d;
	struct obs *obs;
	int fd;
};

/* What a request gets, rendered under the snapshot's lock. */
struct http_page {
	enum { PAGE_METRICS, PAGE_HEALTH, PAGE_READY } kind;
	unsigned status;
	struct buf body;
	int failed;
};

static void
http_render(const struct obs_snap *s, void *arg)
{
	struct http_page *pg = arg;
	char why[256];
	bool ok;

	if (pg->kind == PAGE_METRICS) {
		pg->status = MHD_HTTP_OK;
		pg->failed = metrics_render(s, &pg->body);
		return;
	}
	ok = pg->kind == PAGE_HEALTH ? obs_healthy(s, why, sizeof(why)) : obs_ready(s, why, sizeof(why));
	pg->status = ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
	pg->failed = buf_append(&pg->body, why, strlen(why)) == -1 || buf_append_byte(&pg->body, '\n') == -1;
}

static enum MHD_Result
http_reply(struct MHD_Connection *c, unsigned status, const char *type, const void *body, size_t len,
    bool allow)
{
	/* MUST_COPY: the body is ours to free as soon as the response is queued. */
	struct MHD_Response *r;
	enum MHD_Result rc;

	if ((r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY)) == NULL)
		return MHD_NO;
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) == MHD_NO ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_NO ||
	    (allow && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") == MHD_NO)) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result
http_text(struct MHD_Connection *c, unsigned status, const char *msg, bool allow)
{
	return http_reply(c, status, HTTP_TEXT, msg, strlen(msg), allow);
}

static enum MHD_Result
http_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct http *h = cls;
	struct http_page pg = { .kind = PAGE_METRICS };
	enum MHD_Result rc;

	(void)version;
	(void)upload_data;
	/* A body (of a POST, say) is never read: answer at once, MHD discards the rest. */
	*upload_data_size = 0;
	*con_cls = NULL;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return http_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD\n", true);
	if (strcmp(url, "/metrics") == 0)
		pg.kind = PAGE_METRICS;
	else if (strcmp(url, "/healthz") == 0)
		pg.kind = PAGE_HEALTH;
	else if (strcmp(url, "/readyz") == 0)
		pg.kind = PAGE_READY;
	else
		return http_text(c, MHD_HTTP_NOT_FOUND, "not found: /metrics, /healthz or /readyz\n", false);
	obs_read(h->obs, http_render, &pg);
	if (pg.failed) {
		log_warnx("http: out of memory rendering %s", url);
		rc = http_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", false);
	} else {
		rc = http_reply(c, pg.status, pg.kind == PAGE_METRICS ? METRICS_CONTENT_TYPE : HTTP_TEXT,
		    pg.body.data, pg.body.len, false);
	}
	buf_free(&pg.body);
	return rc;
}

/* Bound here rather than by MHD, so a failure says which address and why. */
static int
http_bind(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	const char *why;
	int fd, one = 1;

	if (listen_parse(addr, &ss, &sslen, &why) == -1) {
		log_errorx("http.listen \"%s\" %s", addr, why);
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
		log_error("http.listen %s: socket", addr);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		log_warn("http.listen %s: SO_REUSEADDR", addr);
	if (bind(fd, (struct sockaddr *)&ss, sslen) == -1) {
		log_error("http.listen %s: bind", addr);
		log_errorx("http.listen %s: another process may hold that port; set [http] listen to a "
		    "free address, or to \"\" to turn the endpoint off", addr);
		close(fd);
		return -1;
	}
	if (listen(fd, 64) == -1) {
		log_error("http.listen %s: listen", addr);
		close(fd);
		return -1;
	}
	return fd;
}

struct http *
http_start(const char *addr, struct obs *o)
{
	struct http *h;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		log_error("allocating the HTTP server for %s", addr);
		return NULL;
	}
	h->obs = o;
	if ((h->fd = http_bind(addr)) == -1) {
		free(h);
		return NULL;
	}
	h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG,
	    0, NULL, NULL, http_on_request, h,
	    MHD_OPTION_LISTEN_SOCKET, h->fd,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNS,
	    MHD_OPTION_END);
	if (h->d == NULL) {
		log_errorx("http.listen %s: libmicrohttpd could not start (see its message above)", addr);
		close(h->fd);
		free(h);
		return NULL;
	}
	log_info("serving /metrics, /healthz and /readyz on http://%s", addr);
	return h;
}

void
http_stop(struct http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	/* MHD does not close a socket it was given. */
	close(h->fd);
	free(h);
}
