#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <nats/nats.h>

#include "../common/clock.h"
#include "../common/natsconn.h"
#include "../common/quote.h"
#include "dlq.h"

/* The headers common/deadletter.c puts on every copy. */
#define DLQ_REASON "Alarm-Reject-Reason"
#define DLQ_SUBJECT "Alarm-Original-Subject"
#define DLQ_SIZE "Alarm-Original-Size"
/* Ours, on a replayed message: where it came from. */
#define DLQ_REPLAYED "Alarm-Replayed-From"

#define DLQ_CONNECT_MS 5000
/* A message the ordered consumer owes us and has not sent this long: the scan ends there. */
#define DLQ_NEXT_MS 5000
#define DLQ_SHOWN 512

struct dlq {
	struct ctl *c;
	natsConnection *nc;
	jsCtx *js;
	char where[1024];        /* servers, redacted */
	uint64_t first, last;    /* the stream's sequences when we looked */
	uint64_t msgs;
	const char *filter;      /* the stream's one subject, or the configured dead-letter subject */
	jsStreamInfo *si;
};

/* What the options of list and replay select. */
struct dlq_select {
	const char *reason;      /* the reason's name (before ": "), NULL: any */
	int64_t since_ns;        /* 0: from the start */
	bool dry_run;
};

/* One dead letter as the commands show it. */
struct dlq_item {
	uint64_t seq;
	int64_t time_ns;
	const char *raw_reason;       /* the header as it came; lives with the message */
	char reason[DLQ_SHOWN];       /* the whole header, quoted */
	char code[64];                /* its name: "too_many_alarms" */
	const char *orig_subject;     /* raw, NULL when missing; lives with the message */
	char subject[DLQ_SHOWN];      /* quoted, "-" when missing */
	char user[DLQ_SHOWN];         /* quoted UserID of the payload, "-" when none */
	char raw_user[1024];          /* as it came (IDs are at most 500 bytes) */
	size_t raw_user_len;
	bool has_user;
	int size;                     /* bytes kept */
	long long orig_size;          /* Alarm-Original-Size, -1 when whole */
};

static int64_t dlq_deadline;

static bool
dlq_connect_stop(void *arg)
{
	(void)arg;
	return clock_mono_ms() >= dlq_deadline;
}

static void
dlq_close(struct dlq *d)
{
	jsStreamInfo_Destroy(d->si);
	jsCtx_Destroy(d->js);
	if (d->nc != NULL)
		natsconn_close(d->nc);
	nats_Close();
}

static int
dlq_open(struct dlq *d, struct ctl *c)
{
	struct natsconn_opts o = {
		.servers = c->cfg.servers, .cfg = &c->cfg, .name = "alarmctl",
		.wait_connected = true, .stop = dlq_connect_stop,
	};
	jsErrCode jerr = 0;
	natsStatus s;

	memset(d, 0, sizeof(*d));
	d->c = c;
	config_redact_servers(c->cfg.servers, d->where, sizeof(d->where));
	if (*c->cfg.dead_letter_stream == '\0') {
		ctl_err("%s: [nats] dead_letter_stream is empty: the service keeps no dead letters in "
		    "a stream", c->conf_path);
		return -1;
	}
	dlq_deadline = clock_mono_ms() + DLQ_CONNECT_MS;
	if ((d->nc = natsconn_connect(&o)) == NULL) {
		ctl_err("NATS unreachable at %s: no connection within %d s (a refusal, if that was it, "
		    "is logged above)", d->where, DLQ_CONNECT_MS / 1000);
		return -1;
	}
	if ((s = natsConnection_JetStream(&d->js, d->nc, NULL)) != NATS_OK) {
		ctl_err("JetStream context at %s: %s", d->where, natsStatus_GetText(s));
		return -1;
	}
	if ((s = js_GetStreamInfo(&d->si, d->js, c->cfg.dead_letter_stream, NULL, &jerr)) != NATS_OK) {
		if (jerr == JSStreamNotFoundErr)
			ctl_err("dead-letter stream %s not found at %s (has the service run with "
			    "this configuration?)", c->cfg.dead_letter_stream, d->where);
		else if (s == NATS_NO_RESPONDERS)
			ctl_err("JetStream is not enabled at %s", d->where);
		else
			ctl_err("looking up dead-letter stream %s at %s: %s (JetStream error %d)",
			    c->cfg.dead_letter_stream, d->where, natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	d->first = d->si->State.FirstSeq;
	d->last = d->si->State.LastSeq;
	d->msgs = d->si->State.Msgs;
	d->filter = d->si->Config->SubjectsLen == 1 ? d->si->Config->Subjects[0] :
	    c->cfg.subject_dead_letter;
	return 0;
}

static const char *
dlq_header(natsMsg *m, const char *key)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(m, key, &v) != NATS_OK)
		return NULL;
	return v;
}

/* The payload's UserID, when it is a JSON object holding one as a string. */
static void
dlq_user(natsMsg *m, struct dlq_item *it)
{
	struct json_tokener *tok;
	json_object *o, *v;
	int len = natsMsg_GetDataLength(m);

	snprintf(it->user, sizeof(it->user), "-");
	if (len <= 0 || (tok = json_tokener_new()) == NULL)
		return;
	o = json_tokener_parse_ex(tok, natsMsg_GetData(m), len);
	if (o != NULL && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "UserID", &v) && json_object_is_type(v, json_type_string)) {
		size_t n = (size_t)json_object_get_string_len(v);

		it->has_user = true;
		it->raw_user_len = n < sizeof(it->raw_user) ? n : sizeof(it->raw_user);
		memcpy(it->raw_user, json_object_get_string(v), it->raw_user_len);
		quote_bytes(it->user, sizeof(it->user), it->raw_user, it->raw_user_len);
	}
	json_object_put(o);
	json_tokener_free(tok);
}

static void
dlq_item(natsMsg *m, uint64_t seq, int64_t ns, struct dlq_item *it)
{
	const char *reason = dlq_header(m, DLQ_REASON), *size = dlq_header(m, DLQ_SIZE);
	size_t n;

	memset(it, 0, sizeof(*it));
	it->seq = seq;
	it->time_ns = ns;
	if (reason == NULL)
		reason = "";
	it->raw_reason = reason;
	quote_bytes(it->reason, sizeof(it->reason), reason, strlen(reason));
	n = strcspn(reason, ":");
	quote_bytes(it->code, sizeof(it->code), reason, n);
	if (*it->code == '\0')
		snprintf(it->code, sizeof(it->code), "-");
	it->orig_subject = dlq_header(m, DLQ_SUBJECT);
	if (it->orig_subject != NULL && *it->orig_subject == '\0')
		it->orig_subject = NULL;
	if (it->orig_subject != NULL)
		quote_bytes(it->subject, sizeof(it->subject), it->orig_subject, strlen(it->orig_subject));
	else
		snprintf(it->subject, sizeof(it->subject), "-");
	dlq_user(m, it);
	it->size = natsMsg_GetDataLength(m);
	it->orig_size = size != NULL ? atoll(size) : -1;
}

static bool
dlq_matches(const struct dlq_item *it, const struct dlq_select *sel)
{
	return sel->reason == NULL || strcmp(it->code, sel->reason) == 0;
}

/*
 * Every message of the stream up to the last one there when we looked
 * (from since_ns on, if set), in order, to fn; fn returns -1 to stop.
 * 0, or -1 (reported).
 */
static int
dlq_scan(struct dlq *d, int64_t since_ns, int (*fn)(struct dlq *d, natsMsg *m, uint64_t seq,
    int64_t ns, void *arg), void *arg)
{
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;
	int rc = 0;

	/* Nothing there, or nothing that new: no consumer, and no wait for a message that cannot come. */
	if (d->msgs == 0 || (since_ns > 0 && since_ns > d->si->State.LastTime))
		return 0;
	jsSubOptions_Init(&so);
	so.Stream = d->c->cfg.dead_letter_stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = since_ns > 0 ? js_DeliverByStartTime : js_DeliverAll;
	so.Config.OptStartTime = since_ns;
	if ((s = js_SubscribeSync(&sub, d->js, d->filter, NULL, &so, &jerr)) != NATS_OK) {
		ctl_err("reading dead-letter stream %s (subject %s) at %s: %s (JetStream error %d)",
		    d->c->cfg.dead_letter_stream, d->filter, d->where,
		    nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	for (;;) {
		jsMsgMetaData *meta = NULL;
		natsMsg *m = NULL;
		uint64_t seq, pending;
		int64_t ns;

		s = natsSubscription_NextMsg(&m, sub, DLQ_NEXT_MS);
		if (s == NATS_TIMEOUT) {
			/* Nothing at or after --since; or the stream lost its tail meanwhile. */
			if (since_ns == 0)
				ctl_err("dead-letter stream %s sent nothing for %d s before its last "
				    "sequence %" PRIu64 "; stopping there", d->c->cfg.dead_letter_stream,
				    DLQ_NEXT_MS / 1000, d->last);
			break;
		}
		if (s != NATS_OK) {
			ctl_err("reading dead-letter stream %s at %s: %s", d->c->cfg.dead_letter_stream,
			    d->where, natsStatus_GetText(s));
			rc = -1;
			break;
		}
		if ((s = natsMsg_GetMetaData(&meta, m)) != NATS_OK) {
			ctl_err("a message from dead-letter stream %s carries no JetStream metadata: %s",
			    d->c->cfg.dead_letter_stream, natsStatus_GetText(s));
			natsMsg_Destroy(m);
			rc = -1;
			break;
		}
		seq = meta->Sequence.Stream;
		ns = meta->Timestamp;
		pending = meta->NumPending;
		jsMsgMetaData_Destroy(meta);
		/* Past what was there when we looked: copies made by our own replay, say. */
		if (seq > d->last) {
			natsMsg_Destroy(m);
			break;
		}
		rc = fn(d, m, seq, ns, arg);
		natsMsg_Destroy(m);
		if (rc == -1 || seq >= d->last || pending == 0)
			break;
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	return rc;
}

static int
dlq_on_opt(int val, const char *arg, void *arg2)
{
	struct dlq_select *sel = arg2;

	switch (val) {
	case 'r':
		sel->reason = arg;
		return 0;
	case 's':
		return ctl_parse_since(arg, &sel->since_ns);
	case 'n':
		sel->dry_run = true;
		return 0;
	}
	return -1;
}

/* Options, then no operands: the index past them, or -1 (usage), or 0 when --help was done. */
static int
dlq_args(struct ctl *c, const struct ctl_cmd *cmd, int argc, char *argv[],
    const struct ctl_opt *opts, struct dlq_select *sel, bool *done)
{
	int i = ctl_getopt(c, cmd, argc, argv, opts, dlq_on_opt, sel, done);

	if (i == -1 || *done)
		return i;
	if (i != argc) {
		ctl_err("%s takes no operands (got %s)", cmd->name, argv[i]);
		return -1;
	}
	return i;
}

/* ---- list ---- */

struct dlq_list {
	const struct dlq_select *sel;
	struct ctl_table *t;
	json_object *arr;
	uint64_t shown;
};

/*
 * A JSON string of untrusted bytes: as they are when all are printable
 * ASCII (json-c escapes '"' and '\\'), else quoted as in the text output, so
 * the document stays valid UTF-8 whatever the bytes.
 */
static json_object *
dlq_json_bytes(const char *b, size_t n)
{
	json_object *o;
	char *q;
	size_t i;

	for (i = 0; i < n && b[i] >= 0x20 && b[i] < 0x7f; i++)
		;
	if (i == n)
		return json_object_new_string_len(b, (int)n);
	if ((q = malloc(QUOTE_CAP(n))) == NULL)
		return NULL;
	o = json_object_new_string(quote_bytes(q, QUOTE_CAP(n), b, n));
	free(q);
	return o;
}

static json_object *
dlq_item_json(const struct dlq_item *it)
{
	json_object *o = json_object_new_object();
	char when[32];

	ctl_time(it->time_ns, when, sizeof(when));
	json_object_object_add(o, "seq", json_object_new_int64((int64_t)it->seq));
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "reason", json_object_new_string(it->code));
	json_object_object_add(o, "detail", dlq_json_bytes(it->raw_reason, strlen(it->raw_reason)));
	json_object_object_add(o, "subject", it->orig_subject != NULL ?
	    dlq_json_bytes(it->orig_subject, strlen(it->orig_subject)) : NULL);
	json_object_object_add(o, "user", it->has_user ?
	    dlq_json_bytes(it->raw_user, it->raw_user_len) : NULL);
	json_object_object_add(o, "size", json_object_new_int(it->size));
	json_object_object_add(o, "original_size", json_object_new_int64(it->orig_size >= 0 ?
	    it->orig_size : it->size));
	json_object_object_add(o, "truncated", json_object_new_boolean(it->orig_size >= 0));
	return o;
}

static int
dlq_list_one(struct dlq *d, natsMsg *m, uint64_t seq, int64_t ns, void *arg)
{
	struct dlq_list *l = arg;
	struct dlq_item it;
	char sseq[24], when[32], size[48];

	(void)d;
	dlq_item(m, seq, ns, &it);
	if (!dlq_matches(&it, l->sel))
		return 0;
	l->shown++;
	if (l->arr != NULL)
		return json_object_array_add(l->arr, dlq_item_json(&it)) == 0 ? 0 : -1;
	snprintf(sseq, sizeof(sseq), "%" PRIu64, seq);
	ctl_time(ns, when, sizeof(when));
	if (it.orig_size >= 0)
		snprintf(size, sizeof(size), "%d of %lld", it.size, it.orig_size);
	else
		snprintf(size, sizeof(size), "%d", it.size);
	const char *row[] = { sseq, when, it.code, it.subject, it.user, size };
	return ctl_table_add(l->t, row);
}

static const struct ctl_opt dlq_list_opts[] = {
	{ "reason", true, 'r' },
	{ "since", true, 's' },
	{ NULL, false, 0 },
};

static int
dlq_list(struct ctl *c, int argc, char *argv[])
{
	static const char *heads[] = { "SEQ", "TIME", "REASON", "SUBJECT", "USER", "SIZE" };
	struct dlq_select sel = { 0 };
	struct dlq_list l = { .sel = &sel };
	struct dlq d;
	bool done;
	int rc = CTL_EXIT_FAIL;

	if (dlq_args(c, &dlq_list_cmd, argc, argv, dlq_list_opts, &sel, &done) == -1)
		return CTL_EXIT_USAGE;
	if (done)
		return CTL_EXIT_OK;
	if (dlq_open(&d, c) == -1)
		goto out;
	if (c->json ? (l.arr = json_object_new_array()) == NULL : (l.t = ctl_table_new(6, heads)) == NULL) {
		ctl_err("allocating the list: out of memory");
		goto out;
	}
	if (dlq_scan(&d, sel.since_ns, dlq_list_one, &l) == -1)
		goto out;
	if (l.arr != NULL) {
		printf("%s\n", json_object_to_json_string_ext(l.arr, JSON_C_TO_STRING_PLAIN));
	} else {
		ctl_table_print(l.t);
		printf("%" PRIu64 " of %" PRIu64 " dead letters in %s\n", l.shown, d.msgs,
		    c->cfg.dead_letter_stream);
	}
	rc = CTL_EXIT_OK;
out:
	json_object_put(l.arr);
	ctl_table_free(l.t);
	dlq_close(&d);
	return rc;
}

const struct ctl_cmd dlq_list_cmd = {
	"dead-letter list", "[--reason R] [--since T]",
	"list the dead letters: one line each",
	"Reads [nats] dead_letter_stream with an ordered consumer of its own (the service's\n"
	"consumer is not touched).  Columns: stream sequence, time stored, reason (the name\n"
	"before the first ':' of Alarm-Reject-Reason), original subject, the payload's UserID\n"
	"when it parses, and size (\"K of N\" when only the first K bytes were kept).\n"
	"  --reason R   only reason R (e.g. too_many_alarms, id_too_long, bad_json)\n"
	"  --since T    stored at or after T: RFC 3339 (2026-11-30T03:00:00Z) or a\n"
	"               duration ago (30m, 2h, 7d)\n"
	"  --json       a JSON array of {seq, time, reason, detail, subject, user, size,\n"
	"               original_size, truncated}\n",
	false,
	dlq_list,
};

/* ---- show ---- */

static void
dlq_show_text(natsMsg *m, const struct dlq_item *it)
{
	const char **keys = NULL;
	char when[32], q[QUOTE_CAP(DLQ_SHOWN)], *p;
	int n = 0, len = natsMsg_GetDataLength(m);

	ctl_time(it->time_ns, when, sizeof(when));
	printf("seq      %" PRIu64 "\n", it->seq);
	printf("time     %s\n", when);
	printf("reason   %s\n", it->code);
	printf("subject  %s\n", it->subject);
	printf("user     %s\n", it->user);
	if (it->orig_size >= 0)
		printf("size     %d (the first bytes of %lld)\n", it->size, it->orig_size);
	else
		printf("size     %d\n", it->size);
	if (natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
		for (int i = 0; i < n; i++) {
			const char *v = dlq_header(m, keys[i]);
			quote_bytes(q, sizeof(q), v ? v : "", v ? strlen(v) : 0);
			printf("header   %s: %s\n", keys[i], q);
		}
		free((void *)keys);
	}
	/* Every byte shown, whatever the size: an operator asked for this one message. */
	if ((p = malloc(QUOTE_CAP((size_t)len))) == NULL) {
		ctl_err("quoting a %d-byte payload: out of memory", len);
		return;
	}
	printf("payload  \"%s\"\n", quote_bytes(p, QUOTE_CAP((size_t)len), natsMsg_GetData(m), (size_t)len));
	free(p);
}

static void
dlq_show_json(natsMsg *m, const struct dlq_item *it)
{
	json_object *o = dlq_item_json(it), *h = json_object_new_object();
	const char **keys = NULL;
	int n = 0, len = natsMsg_GetDataLength(m);

	if (natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
		for (int i = 0; i < n; i++) {
			const char *v = dlq_header(m, keys[i]);
			json_object_object_add(h, keys[i], dlq_json_bytes(v ? v : "", v ? strlen(v) : 0));
		}
		free((void *)keys);
	}
	json_object_object_add(o, "headers", h);
	json_object_object_add(o, "payload", dlq_json_bytes(natsMsg_GetData(m), (size_t)len));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

static int
dlq_show(struct ctl *c, int argc, char *argv[])
{
	struct dlq_select sel = { 0 };
	struct dlq d;
	natsMsg *m = NULL;
	struct dlq_item it;
	jsErrCode jerr = 0;
	unsigned long long seq;
	char *end;
	bool done;
	int i, rc = CTL_EXIT_FAIL;
	natsStatus s;

	if ((i = ctl_getopt(c, &dlq_show_cmd, argc, argv, NULL, NULL, &sel, &done)) == -1)
		return CTL_EXIT_USAGE;
	if (done)
		return CTL_EXIT_OK;
	if (argc - i != 1) {
		ctl_err("dead-letter show takes one SEQ");
		return CTL_EXIT_USAGE;
	}
	errno = 0;
	seq = strtoull(argv[i], &end, 10);
	if (errno != 0 || *argv[i] == '\0' || *end != '\0' || seq == 0) {
		ctl_err("dead-letter show %s: SEQ is a stream sequence, a number from 1 up", argv[i]);
		return CTL_EXIT_USAGE;
	}
	if (dlq_open(&d, c) == -1)
		goto out;
	if ((s = js_GetMsg(&m, d.js, c->cfg.dead_letter_stream, seq, NULL, &jerr)) != NATS_OK) {
		if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
			ctl_err("no message %llu in dead-letter stream %s (it holds %" PRIu64 " to %"
			    PRIu64 ")", seq, c->cfg.dead_letter_stream, d.first, d.last);
		else
			ctl_err("fetching message %llu of dead-letter stream %s: %s (JetStream error %d)",
			    seq, c->cfg.dead_letter_stream, natsStatus_GetText(s), (int)jerr);
		goto out;
	}
	dlq_item(m, natsMsg_GetSequence(m), natsMsg_GetTime(m), &it);
	if (c->json)
		dlq_show_json(m, &it);
	else
		dlq_show_text(m, &it);
	rc = CTL_EXIT_OK;
out:
	natsMsg_Destroy(m);
	dlq_close(&d);
	return rc;
}

const struct ctl_cmd dlq_show_cmd = {
	"dead-letter show", "SEQ",
	"print one dead letter: its headers and its payload",
	"Fetches message SEQ of the dead-letter stream by sequence (no consumer).  The\n"
	"payload and header values are printed quoted: printable ASCII as is, '\"' and '\\'\n"
	"escaped, every other byte as \\xNN, so nothing in them can act on the terminal.\n"
	"  --json   {seq, time, reason, detail, subject, user, size, original_size,\n"
	"           truncated, headers, payload}: strings as they came when printable\n"
	"           ASCII, else in the quoted form above\n",
	false,
	dlq_show,
};

/* ---- replay ---- */

struct dlq_replay {
	const struct dlq_select *sel;
	struct ctl_table *t;
	json_object *arr;
	uint64_t replayed, duplicate, failed, would;
	uint64_t not_matching, no_subject, truncated;
};

static void
dlq_replay_note(struct dlq_replay *r, const struct dlq_item *it, const char *outcome)
{
	char sseq[24];

	if (r->arr != NULL) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "seq", json_object_new_int64((int64_t)it->seq));
		json_object_object_add(o, "subject", it->orig_subject != NULL ?
		    dlq_json_bytes(it->orig_subject, strlen(it->orig_subject)) : NULL);
		json_object_object_add(o, "user", it->has_user ?
		    dlq_json_bytes(it->raw_user, it->raw_user_len) : NULL);
		json_object_object_add(o, "outcome", json_object_new_string(outcome));
		json_object_array_add(r->arr, o);
		return;
	}
	snprintf(sseq, sizeof(sseq), "%" PRIu64, it->seq);
	const char *row[] = { sseq, it->code, it->subject, it->user, outcome };
	ctl_table_add(r->t, row);
}

/* Republish m to its original subject through JetStream, deduplicated by its sequence. */
static int
dlq_replay_one(struct dlq *d, natsMsg *m, uint64_t seq, int64_t ns, void *arg)
{
	struct dlq_replay *r = arg;
	struct dlq_item it;
	natsMsg *out = NULL;
	jsPubAck *pa = NULL;
	jsPubOptions po;
	jsErrCode jerr = 0;
	char id[256], from[256], why[DLQ_SHOWN + 128];
	natsStatus s;

	dlq_item(m, seq, ns, &it);
	if (!dlq_matches(&it, r->sel)) {
		r->not_matching++;
		return 0;
	}
	if (it.orig_subject == NULL) {
		r->no_subject++;
		dlq_replay_note(r, &it, "skipped: no original subject");
		return 0;
	}
	/* Only the first bytes were kept: replaying them would be a different message. */
	if (it.orig_size >= 0) {
		r->truncated++;
		dlq_replay_note(r, &it, "skipped: truncated copy");
		return 0;
	}
	if (r->sel->dry_run) {
		r->would++;
		dlq_replay_note(r, &it, "would replay");
		return 0;
	}
	/* Stream name and sequence: the same dead letter always gets the same id. */
	snprintf(id, sizeof(id), "alarmctl-replay:%s:%" PRIu64, d->c->cfg.dead_letter_stream, seq);
	snprintf(from, sizeof(from), "%s:%" PRIu64, d->c->cfg.dead_letter_stream, seq);
	s = natsMsg_Create(&out, it.orig_subject, NULL, natsMsg_GetData(m), natsMsg_GetDataLength(m));
	if (s == NATS_OK)
		s = natsMsgHeader_Set(out, DLQ_REPLAYED, from);
	if (s == NATS_OK) {
		jsPubOptions_Init(&po);
		po.MsgId = id;
		s = js_PublishMsg(&pa, d->js, out, &po, &jerr);
	}
	if (s != NATS_OK) {
		r->failed++;
		if (s == NATS_NO_RESPONDERS)
			snprintf(why, sizeof(why), "failed: no stream takes subject %s", it.subject);
		else
			snprintf(why, sizeof(why), "failed: %s (JetStream error %d)",
			    natsStatus_GetText(s), (int)jerr);
		dlq_replay_note(r, &it, why);
	} else if (pa->Duplicate) {
		r->duplicate++;
		dlq_replay_note(r, &it, "skipped: already replayed (same id within the stream's "
		    "duplicate window)");
	} else {
		r->replayed++;
		snprintf(why, sizeof(why), "replayed as %s seq %" PRIu64, pa->Stream, pa->Sequence);
		dlq_replay_note(r, &it, why);
	}
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(out);
	return 0;
}

static const struct ctl_opt dlq_replay_opts[] = {
	{ "reason", true, 'r' },
	{ "dry-run", false, 'n' },
	{ NULL, false, 0 },
};

static int
dlq_replay(struct ctl *c, int argc, char *argv[])
{
	static const char *heads[] = { "SEQ", "REASON", "SUBJECT", "USER", "OUTCOME" };
	struct dlq_select sel = { 0 };
	struct dlq_replay r = { .sel = &sel };
	struct dlq d;
	bool done;
	int rc = CTL_EXIT_FAIL;
	uint64_t skipped;

	if (dlq_args(c, &dlq_replay_cmd, argc, argv, dlq_replay_opts, &sel, &done) == -1)
		return CTL_EXIT_USAGE;
	if (done)
		return CTL_EXIT_OK;
	if (dlq_open(&d, c) == -1)
		goto out;
	if (c->json ? (r.arr = json_object_new_array()) == NULL : (r.t = ctl_table_new(5, heads)) == NULL) {
		ctl_err("allocating the replay list: out of memory");
		goto out;
	}
	if (dlq_scan(&d, 0, dlq_replay_one, &r) == -1)
		goto out;
	skipped = r.duplicate + r.not_matching + r.no_subject + r.truncated;
	if (r.arr != NULL) {
		json_object *o = json_object_new_object(), *sk = json_object_new_object();
		json_object_object_add(o, "dry_run", json_object_new_boolean(sel.dry_run));
		json_object_object_add(o, "replayed", json_object_new_int64((int64_t)(sel.dry_run ?
		    r.would : r.replayed)));
		json_object_object_add(o, "failed", json_object_new_int64((int64_t)r.failed));
		json_object_object_add(o, "skipped", json_object_new_int64((int64_t)skipped));
		json_object_object_add(sk, "already_replayed", json_object_new_int64((int64_t)r.duplicate));
		json_object_object_add(sk, "not_matching", json_object_new_int64((int64_t)r.not_matching));
		json_object_object_add(sk, "no_original_subject", json_object_new_int64((int64_t)r.no_subject));
		json_object_object_add(sk, "truncated", json_object_new_int64((int64_t)r.truncated));
		json_object_object_add(o, "skipped_by_cause", sk);
		json_object_object_add(o, "messages", json_object_get(r.arr));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else {
		ctl_table_print(r.t);
		printf("%s %" PRIu64 ", skipped %" PRIu64 " (already replayed %" PRIu64 ", not matching %"
		    PRIu64 ", no original subject %" PRIu64 ", truncated %" PRIu64 "), failed %" PRIu64 "\n",
		    sel.dry_run ? "would replay" : "replayed", sel.dry_run ? r.would : r.replayed, skipped,
		    r.duplicate, r.not_matching, r.no_subject, r.truncated, r.failed);
	}
	rc = r.failed > 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
out:
	json_object_put(r.arr);
	ctl_table_free(r.t);
	dlq_close(&d);
	return rc;
}

const struct ctl_cmd dlq_replay_cmd = {
	"dead-letter replay", "[--reason R] [--dry-run]",
	"republish dead letters to their original subjects",
	"Each selected dead letter is published again, payload unchanged, to its\n"
	"Alarm-Original-Subject through JetStream (acked by the service's stream), with\n"
	"Nats-Msg-Id alarmctl-replay:STREAM:SEQ, so a second replay within the stream's\n"
	"duplicate window is dropped by the server, and the header Alarm-Replayed-From:\n"
	"STREAM:SEQ.  Skipped: other reasons (--reason), copies without an original\n"
	"subject, truncated copies (Alarm-Original-Size: only their first bytes were\n"
	"kept).  Raise the limit that rejected them first (alarmctl reload), or they are\n"
	"dead-lettered again.  Exit 1 if any publish failed.\n"
	"  --reason R   only reason R\n"
	"  --dry-run    list what would be replayed, publish nothing\n"
	"  --json       {dry_run, replayed, failed, skipped, skipped_by_cause, messages}\n",
	false,
	dlq_replay,
};
