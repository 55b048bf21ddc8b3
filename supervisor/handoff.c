#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../common/log.h"
#include "handoff.h"

/* A batch the callback may fill before it waits for the main thread. */
#define HANDOFF_BATCH_ITEMS 8192
#define HANDOFF_BATCH_BYTES (4u << 20)
/*
 * A wake held back for deliveries still to come goes out at this many
 * items all the same: the main loop routes the first part of a long
 * burst while the callback parses the rest.
 */
#define HANDOFF_WAKE_ITEMS 256

struct handoff {
	int wake_fd;
	pthread_mutex_t lock;
	pthread_cond_t room;
	struct handoff_batch fill;  /* guarded by lock */
	bool shut;                  /* guarded by lock: release instead of queueing */
	bool woken;                 /* guarded by lock: wake_fd written since the last take */
};

static void
handoff_batch_clear(struct handoff_batch *b)
{
	for (size_t i = b->pos; i < b->n; i++)
		if (b->items[i].msg != NULL)
			natsMsg_Destroy(b->items[i].msg);
	b->n = b->pos = 0;
	buf_reset(&b->frames);
}

void
handoff_batch_free(struct handoff_batch *b)
{
	handoff_batch_clear(b);
	free(b->items);
	buf_free(&b->frames);
	memset(b, 0, sizeof(*b));
}

static bool
handoff_batch_full(const struct handoff_batch *b)
{
	return b->n >= HANDOFF_BATCH_ITEMS || buf_unread(&b->frames) >= HANDOFF_BATCH_BYTES;
}

static int
handoff_batch_push(struct handoff_batch *b, uint32_t hash, uint64_t stream_seq, uint16_t lane,
    uint32_t binding, natsMsg *msg, int (*encode)(struct buf *, const void *), const void *arg)
{
	size_t off = b->frames.len;

	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 256;
		struct handoff_item *n = realloc(b->items, ncap * sizeof(*n));
		if (n == NULL)
			return -1;
		b->items = n;
		b->cap = ncap;
	}
	if (encode != NULL && encode(&b->frames, arg) == -1)
		return -1;
	b->items[b->n++] = (struct handoff_item){
		.hash = hash,
		.frame_off = (uint32_t)off,
		.frame_len = (uint32_t)(b->frames.len - off),
		.lane = lane,
		.binding = binding,
		.stream_seq = stream_seq,
		.msg = msg,
	};
	return 0;
}

/* Under the lock: whether this put is the one that must wake the main loop (then it is marked woken). */
static bool
handoff_wake_due(struct handoff *h, bool more)
{
	if (h->woken || h->fill.n == 0)
		return false;
	if (more && h->fill.n < HANDOFF_WAKE_ITEMS && !handoff_batch_full(&h->fill))
		return false;
	h->woken = true;
	return true;
}

static void
handoff_wake(struct handoff *h)
{
	uint64_t one = 1;

	if (write(h->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_error("write to intake eventfd");
}

int
handoff_put(struct handoff *h, uint32_t hash, uint64_t stream_seq, uint16_t lane, uint32_t binding,
    natsMsg *msg, bool more,
    int (*encode)(struct buf *frames, const void *arg), const void *arg)
{
	bool wake;

	pthread_mutex_lock(&h->lock);
	while (handoff_batch_full(&h->fill) && !h->shut) {
		/* A full batch waits for the main loop: it must have been told. */
		if (handoff_wake_due(h, false)) {
			pthread_mutex_unlock(&h->lock);
			handoff_wake(h);
			pthread_mutex_lock(&h->lock);
			continue;
		}
		pthread_cond_wait(&h->room, &h->lock);
	}
	if (h->shut) {
		pthread_mutex_unlock(&h->lock);
		return 1;
	}
	if (handoff_batch_push(&h->fill, hash, stream_seq, lane, binding, msg, encode, arg) == -1) {
		/* What is already queued must not wait for a put that failed. */
		wake = handoff_wake_due(h, false);
		pthread_mutex_unlock(&h->lock);
		if (wake)
			handoff_wake(h);
		return -1;
	}
	wake = handoff_wake_due(h, more);
	pthread_mutex_unlock(&h->lock);
	if (wake)
		handoff_wake(h);
	return 0;
}

void
handoff_shut(struct handoff *h)
{
	pthread_mutex_lock(&h->lock);
	h->shut = true;
	handoff_batch_clear(&h->fill);
	pthread_cond_broadcast(&h->room);
	pthread_mutex_unlock(&h->lock);
}

void
handoff_open(struct handoff *h)
{
	pthread_mutex_lock(&h->lock);
	h->shut = false;
	/* The shut emptied the batch a pending wake was for; the next put wakes afresh. */
	h->woken = false;
	pthread_mutex_unlock(&h->lock);
}

int
handoff_wake_fd(const struct handoff *h)
{
	return h->wake_fd;
}

int
handoff_take(struct handoff *h, struct handoff_batch *b)
{
	uint64_t v;

	if (read(h->wake_fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		log_error("read from intake eventfd");
	handoff_batch_clear(b);
	pthread_mutex_lock(&h->lock);
	struct handoff_batch t = h->fill;
	h->fill = *b;
	*b = t;
	h->woken = false;
	pthread_cond_broadcast(&h->room);
	pthread_mutex_unlock(&h->lock);
	return b->n > 0;
}

struct handoff *
handoff_new(void)
{
	struct handoff *h;
	int err;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		log_error("allocating the intake handoff");
		return NULL;
	}
	if ((err = pthread_mutex_init(&h->lock, NULL)) != 0) {
		errno = err;
		log_error("pthread_mutex_init for the intake handoff");
		free(h);
		return NULL;
	}
	if ((err = pthread_cond_init(&h->room, NULL)) != 0) {
		errno = err;
		log_error("pthread_cond_init for the intake handoff");
		pthread_mutex_destroy(&h->lock);
		free(h);
		return NULL;
	}
	if ((h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_error("eventfd for the intake handoff");
		pthread_cond_destroy(&h->room);
		pthread_mutex_destroy(&h->lock);
		free(h);
		return NULL;
	}
	return h;
}

void
handoff_free(struct handoff *h)
{
	if (h == NULL)
		return;
	handoff_batch_free(&h->fill);
	close(h->wake_fd);
	pthread_cond_destroy(&h->room);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
