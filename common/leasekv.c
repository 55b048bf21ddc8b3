#include <inttypes.h>
#include <stdio.h>
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

natsStatus
leasekv_write(jsCtx *js, const char *bucket, const char *key, const char *value, uint64_t expect,
    int64_t wait_ms, uint64_t *rev, jsErrCode *jerr)
{
	char subject[600], seq[24];
	natsMsg *msg = NULL;
	jsPubAck *pa = NULL;
	jsPubOptions po;
	natsStatus s;

	*jerr = 0;
	if (leasekv_subject(subject, sizeof(subject), bucket, key) == -1)
		return NATS_INVALID_ARG;
	snprintf(seq, sizeof(seq), "%" PRIu64, expect);
	s = natsMsg_Create(&msg, subject, NULL, value, value != NULL ? (int)strlen(value) : 0);
	/* The header, not jsPubOptions.ExpectLastSubjectSeq: that one cannot say 0 ("none"). */
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", seq);
	if (s == NATS_OK && value == NULL)
		s = natsMsgHeader_Set(msg, "KV-Operation", "DEL");
	if (s == NATS_OK) {
		jsPubOptions_Init(&po);
		po.MaxWait = wait_ms;
		s = js_PublishMsg(&pa, js, msg, &po, jerr);
	}
	if (s == NATS_OK)
		*rev = pa->Sequence;
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(msg);
	return s;
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
