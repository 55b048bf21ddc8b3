#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "chan.h"

struct chan {
	int fd;
	struct buf in;      /* read, not consumed: pending frames, then the rest */
	size_t pending;     /* bytes after in.off taken by chan_next */
	struct buf out;     /* composed, not written */
};

struct chan *
chan_new(int fd)
{
	struct chan *c;
	int fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->fd = fd;
	return c;
}

void
chan_free(struct chan *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

int
chan_fd(const struct chan *c)
{
	return c->fd;
}

int
chan_fill(struct chan *c, size_t chunk)
{
	for (;;) {
		/* Compacting moves pending frames too: c->pending counts from in.off, so it holds. */
		if (buf_reserve(&c->in, chunk) == -1)
			return -1;
		ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
		if (n == 0)
			return CHAN_EOF;
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return CHAN_AGAIN;
			/*
			 * A peer that exits with bytes of ours unread resets the
			 * socket once its own bytes are read: an EOF like any other
			 * (a worker stopping while a fence was on its way).
			 */
			if (errno == ECONNRESET)
				return CHAN_EOF;
			return -1;
		}
		c->in.len += (size_t)n;
		if (buf_unread(&c->in) - c->pending >= chunk)
			return CHAN_MORE;
	}
}

int
chan_next(struct chan *c, struct frame *f, const char **err)
{
	size_t used;
	int rc;

	rc = frame_next(c->in.data + c->in.off + c->pending, buf_unread(&c->in) - c->pending, f, &used, err);
	if (rc == 1)
		c->pending += used;
	return rc;
}

void
chan_consume(struct chan *c)
{
	buf_consume(&c->in, c->pending);
	c->pending = 0;
}

void
chan_rewind(struct chan *c)
{
	c->pending = 0;
}

size_t
chan_pending(const struct chan *c)
{
	return c->pending;
}

size_t
chan_buffered(const struct chan *c)
{
	return buf_unread(&c->in);
}

struct buf *
chan_out(struct chan *c)
{
	return &c->out;
}

size_t
chan_queued(const struct chan *c)
{
	return buf_unread(&c->out);
}

/* The one write loop: as much of p[0..len) as the socket takes. */
static ssize_t
chan_write(int fd, const uint8_t *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int
chan_flush(struct chan *c)
{
	ssize_t n;

	if (buf_unread(&c->out) == 0)
		return 0;
	if ((n = chan_write(c->fd, c->out.data + c->out.off, buf_unread(&c->out))) == -1)
		return -1;
	buf_consume(&c->out, (size_t)n);
	return 0;
}

int
chan_flush_wait(struct chan *c)
{
	for (;;) {
		if (chan_flush(c) == -1)
			return -1;
		if (buf_unread(&c->out) == 0)
			return 0;
		/* Timeouts and EINTR only lead to another try: the peer reads steadily. */
		struct pollfd pfd = { c->fd, POLLOUT, 0 };
		(void)poll(&pfd, 1, 1000);
	}
}

ssize_t
chan_send(struct chan *c, const void *p, size_t len)
{
	if (chan_flush(c) == -1)
		return -1;
	if (buf_unread(&c->out) > 0)
		return 0;
	return chan_write(c->fd, p, len);
}
