/* Unit tests for common/ring.c: a FIFO in chunks, whose positions name entries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "ring.h"

struct item {
	uint64_t pos;
	uint32_t pad[3];
};

/* Every queued entry is where its position says, with what was pushed there. */
static void
check_all(const struct ring *r)
{
	for (uint64_t p = r->head; p < r->tail; p++)
		assert_int_equal(((const struct item *)ring_at(r, p))->pos, p);
}

static struct item *
push(struct ring *r)
{
	struct item *it = ring_push(r);

	assert_non_null(it);
	it->pos = r->tail - 1;
	return it;
}

/* A burst past many chunks and back to empty, twice; pointers stay valid while queued. */
static void
test_burst_and_drain(void **state)
{
	struct ring r = { .size = sizeof(struct item) };
	struct item *first;
	(void)state;

	for (int round = 0; round < 2; round++) {
		first = push(&r);
		for (uint64_t i = 1; i < 20 * RING_CHUNK + 7; i++)
			push(&r);
		assert_int_equal(ring_count(&r), 20 * RING_CHUNK + 7);
		/* The table grew many times; the first entry never moved. */
		assert_ptr_equal(first, ring_at(&r, r.head));
		check_all(&r);
		while (ring_count(&r) > 0)
			ring_shift(&r);
		check_all(&r);
	}
	ring_free(&r);
}

/* Random pushes, shifts and unpushes across chunk boundaries agree with a plain model. */
static void
test_random_against_model(void **state)
{
	struct ring r = { .size = sizeof(struct item) };
	uint64_t head = 0, tail = 0;
	(void)state;

	srand(11);
	for (int i = 0; i < 400000; i++) {
		int op = rand() % 100;
		/* Phases that mostly grow, then mostly shrink, so the count swings past many chunks. */
		int grow = (i / 50000) % 2 == 0 ? 60 : 35;

		if (op < grow) {
			push(&r);
			tail++;
		} else if (op < 95) {
			if (tail > head) {
				ring_shift(&r);
				head++;
			}
		} else {
			ring_unpush(&r);
			if (tail > head)
				tail--;
		}
		assert_true(r.head == head && r.tail == tail);
		if (i % 997 == 0)
			check_all(&r);
	}
	check_all(&r);
	ring_free(&r);
	assert_int_equal(ring_count(&r), 0);
}

/* Emptied exactly at a chunk boundary, by a shift or by an unpush, it takes pushes again. */
static void
test_boundaries(void **state)
{
	struct ring r = { .size = sizeof(struct item) };
	(void)state;

	for (uint64_t i = 0; i < RING_CHUNK; i++)
		push(&r);
	while (ring_count(&r) > 0)
		ring_shift(&r);
	assert_int_equal(r.head, RING_CHUNK);
	push(&r);
	ring_unpush(&r);
	assert_int_equal(ring_count(&r), 0);
	ring_unpush(&r);   /* empty: nothing */
	assert_int_equal(r.tail, RING_CHUNK);
	for (uint64_t i = 0; i < 2 * RING_CHUNK + 1; i++)
		push(&r);
	for (uint64_t i = 0; i < RING_CHUNK + 1; i++)
		ring_unpush(&r);
	check_all(&r);
	assert_int_equal(ring_count(&r), RING_CHUNK);
	ring_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_and_drain),
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_boundaries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
