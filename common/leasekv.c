#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "clock.h"
#include "leasekv.h"

int
leasekv_format(char *buf, size_t len, const struct leasekv_value *v)
{
	int n;

	if (v->epoch == 0)
		n = snprintf(buf, len, "{\"instance\":\"%s\",\"since\":%lld}", v->instance,
		    (long long)v->since_ms);
	else
		n = snprintf(buf, len, "{\"instance\":\"%s\",\"since\":%lld,\"epoch\":%" PRIu64 "}",
		    v->instance, (long long)v->since_ms, v->epoch);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

void
leasekv_parse(const void *data, int len, struct leasekv_value *v)
{
	char text[512];
	struct json_object *o, *f;

	memset(v, 0, sizeof(*v));
	if (data == NULL || len <= 0 || (size_t)len >= sizeof(text))
		return;
	memcpy(text, data, (size_t)len);
	text[len] = '\0';
	if ((o = json_tokener_parse(text)) == NULL)
		return;
	if (json_object_object_get_ex(o, "instance", &f) && json_object_is_type(f, json_type_string))
		snprintf(v->instance, sizeof(v->instance), "%s", json_object_get_string(f));
	if (json_object_object_get_ex(o, "since", &f) && json_object_is_type(f, json_type_int))
		v->since_ms = json_object_get_int64(f);
	if (json_object_object_get_ex(o, "epoch", &f) && json_object_is_type(f, json_type_int) &&
	    json_object_get_int64(f) > 0)
		v->epoch = (uint64_t)json_object_get_int64(f);
	json_object_put(o);
}

/* The subject a key lives on (what kvStore_* use without a JetStream domain). */
static int
leasekv_subject(char *buf, size_t len, const char *bucket, const char *key)
{
	int n = snprintf(buf, len, "$KV.%s.%s", bucket, key);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* A PubAck: {"stream":..,"seq":N} or {"error":{"err_code":E,..},..}. */
static void
leasekv_put_answer(struct leasekv_put *p, const char *data, int len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = tok != NULL ? json_tokener_parse_ex(tok, data, len) : NULL;
	struct json_object *err, *v;

	p->status = NATS_ERR;
	p->jerr = 0;
	if (o != NULL && json_object_object_get_ex(o, "error", &err)) {
		if (json_object_object_get_ex(err, "err_code", &v))
			p->jerr = (jsErrCode)json_object_get_int(v);
	} else if (o != NULL && json_object_object_get_ex(o, "seq", &v)) {
		p->rev = (uint64_t)json_object_get_int64(v);
		p->status = NATS_OK;
	}
	json_object_put(o);
	if (tok != NULL)
		json_tokener_free(tok);
}

natsStatus
leasekv_write_all(natsConnection *nc, const char *bucket, struct leasekv_put *puts, int n,
    int64_t wait_ms)
{
	char inbox[128], subject[600], reply[sizeof(inbox) + 16];
	char seq[24];
	natsSubscription *sub = NULL;
	natsInbox *in = NULL;
	int64_t deadline = clock_mono_ms() + wait_ms;
	int left = 0;
	natsStatus s;

	for (int i = 0; i < n; i++)
		puts[i].status = NATS_TIMEOUT;
	if ((s = natsInbox_Create(&in)) != NATS_OK)
		return s;
	snprintf(inbox, sizeof(inbox), "%s", (const char *)in);
	natsInbox_Destroy(in);
	snprintf(reply, sizeof(reply), "%s.*", inbox);
	if ((s = natsConnection_SubscribeSync(&sub, nc, reply)) != NATS_OK)
		return s;
	for (int i = 0; i < n && s == NATS_OK; i++) {
		natsMsg *msg = NULL;

		snprintf(reply, sizeof(reply), "%s.%d", inbox, i);
		snprintf(seq, sizeof(seq), "%" PRIu64, puts[i].expect);
		if (leasekv_subject(subject, sizeof(subject), bucket, puts[i].key) == -1) {
			puts[i].status = NATS_INVALID_ARG;
			continue;
		}
		s = natsMsg_Create(&msg, subject, reply, puts[i].value,
		    puts[i].value != NULL ? (int)strlen(puts[i].value) : 0);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", seq);
		if (s == NATS_OK && puts[i].value == NULL)
			s = natsMsgHeader_Set(msg, "KV-Operation", "DEL");
		if (s == NATS_OK)
			s = natsConnection_PublishMsg(nc, msg);
		if (s == NATS_OK)
			left++;
		natsMsg_Destroy(msg);
	}
	while (s == NATS_OK && left > 0) {
		int64_t wait = deadline - clock_mono_ms();
		natsMsg *m = NULL;
		const char *r;
		char *end;
		long i;

		if (wait <= 0) {
			s = NATS_TIMEOUT;
			break;
		}
		if ((s = natsSubscription_NextMsg(&m, sub, wait)) != NATS_OK)
			break;
		r = strrchr(natsMsg_GetSubject(m), '.');
		i = r != NULL ? strtol(r + 1, &end, 10) : -1;
		if (r != NULL && *end == '\0' && i >= 0 && i < n && puts[i].status == NATS_TIMEOUT) {
			leasekv_put_answer(&puts[i], natsMsg_GetData(m), natsMsg_GetDataLength(m));
			left--;
		}
		natsMsg_Destroy(m);
	}
	natsSubscription_Destroy(sub);
	return s;
}

natsStatus
leasekv_write(natsConnection *nc, const char *bucket, const char *key, const char *value,
    uint64_t expect, int64_t wait_ms, uint64_t *rev, jsErrCode *jerr)
{
	struct leasekv_put put = { .key = key, .value = value, .expect = expect };
	natsStatus s = leasekv_write_all(nc, bucket, &put, 1, wait_ms);

	*jerr = put.jerr;
	*rev = put.rev;
	return s != NATS_OK ? s : put.status;
}

natsStatus
leasekv_read(jsCtx *js, const char *bucket, const char *key, struct leasekv_last *last,
    jsErrCode *jerr)
{
	char subject[600], stream[300];
	natsMsg *msg = NULL;
	const char *op = NULL;
	natsStatus s;

	*jerr = 0;
	memset(last, 0, sizeof(*last));
	if (leasekv_subject(subject, sizeof(subject), bucket, key) == -1)
		return NATS_INVALID_ARG;
	snprintf(stream, sizeof(stream), "KV_%s", bucket);
	s = js_GetLastMsg(&msg, js, stream, subject, NULL, jerr);
	if (s == NATS_NOT_FOUND || *jerr == JSNoMessageFoundErr) {
		*jerr = 0;
		return NATS_OK;
	}
	if (s != NATS_OK)
		return s;
	last->rev = natsMsg_GetSequence(msg);
	if (natsMsgHeader_Get(msg, "KV-Operation", &op) != NATS_OK || op == NULL) {
		last->live = true;
		leasekv_parse(natsMsg_GetData(msg), natsMsg_GetDataLength(msg), &last->value);
		last->age_ms = clock_wall_ms() - natsMsg_GetTime(msg) / 1000000;
	}
	natsMsg_Destroy(msg);
	return NATS_OK;
}
