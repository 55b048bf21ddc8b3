#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "webget.h"

int
webget_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd, port;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		harness_seterr("socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) == -1) {
		harness_seterr("binding 127.0.0.1:0 for a free port: %s", strerror(errno));
		close(fd);
		return -1;
	}
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int
webget_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		harness_seterr("socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		harness_seterr("connect to 127.0.0.1:%d: %s", port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
webget(int port, const char *method, const char *path, int64_t timeout_ms, struct webget_reply *r)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	char req[512], *buf = NULL, *sep;
	size_t len = 0, cap = 0;
	int fd, n;

	memset(r, 0, sizeof(*r));
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
	    method, path, port);
	if ((fd = webget_connect(port)) == -1)
		return -1;
	if (write(fd, req, (size_t)n) != n) {
		harness_seterr("sending %s %s to 127.0.0.1:%d: %s", method, path, port, strerror(errno));
		goto fail;
	}
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int64_t left = deadline - harness_now_ms();
		ssize_t got;

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
			harness_seterr("%s %s on 127.0.0.1:%d: no whole reply within %lld ms", method, path,
			    port, (long long)timeout_ms);
			goto fail;
		}
		if (len + 4096 + 1 > cap) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 16384);
			if (nb == NULL) {
				harness_seterr("out of memory reading a reply");
				goto fail;
			}
			buf = nb;
		}
		if ((got = read(fd, buf + len, cap - len - 1)) == -1) {
			if (errno == EINTR)
				continue;
			harness_seterr("reading %s %s from 127.0.0.1:%d: %s", method, path, port, strerror(errno));
			goto fail;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	fd = -1;
	if (buf == NULL || (buf[len] = '\0', sep = strstr(buf, "\r\n\r\n")) == NULL ||
	    sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
		harness_seterr("%s %s on 127.0.0.1:%d: not an HTTP reply (%zu bytes)", method, path, port, len);
		goto fail;
	}
	*sep = '\0';
	r->body_len = len - (size_t)(sep + 4 - buf);
	if ((r->head = strdup(buf)) == NULL || (r->body = malloc(r->body_len + 1)) == NULL) {
		harness_seterr("out of memory reading a reply");
		goto fail;
	}
	memcpy(r->body, sep + 4, r->body_len);
	r->body[r->body_len] = '\0';
	free(buf);
	return 0;
fail:
	if (fd != -1)
		close(fd);
	free(buf);
	webget_free(r);
	return -1;
}

void
webget_free(struct webget_reply *r)
{
	free(r->head);
	free(r->body);
	r->head = r->body = NULL;
}

int
webget_metric(const char *page, const char *series, double *v)
{
	size_t n = strlen(series);

	for (const char *p = page; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ') {
			char *end;
			*v = strtod(p + n + 1, &end);
			if (end != p + n + 1)
				return 0;
		}
	}
	harness_seterr("no sample %s on the page", series);
	return -1;
}
