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

struct handoff {
	int wake_fd;
	pthread_mutex_t lock;
	pthread_cond_t room;
	struct handoff_batch fill;  /* guarded by lock */
	bool shut;                  /* guarded by lock: release instead of queueing */
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
handoff_batch_push(struct handoff_batch *b, uint32_t hash, uint64_t stream_seq, natsMsg *msg,
    int (*encode)(struct buf *, const void *), const void *arg)
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
		.stream_seq = stream_seq,
		.msg = msg,
	};
	return 0;
}

int
handoff_put(struct handoff *h, uint32_t hash, uint64_t stream_seq, natsMsg *msg,
    int (*encode)(struct buf *frames, const void *arg), const void *arg)
{
	uint64_t one = 1;
	bool was_empty;

	pthread_mutex_lock(&h->lock);
	while (handoff_batch_full(&h->fill) && !h->shut)
		pthread_cond_wait(&h->room, &h->lock);
	if (h->shut) {
		pthread_mutex_unlock(&h->lock);
		return 1;
	}
	was_empty = h->fill.n == 0;
	if (handoff_batch_push(&h->fill, hash, stream_seq, msg, encode, arg) == -1) {
		pthread_mutex_unlock(&h->lock);
		return -1;
	}
	pthread_mutex_unlock(&h->lock);
	/* Only the first item wakes the loop: it takes everything queued by then. */
	if (was_empty && write(h->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_error("write to intake eventfd");
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
