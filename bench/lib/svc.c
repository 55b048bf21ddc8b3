#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tests/lib/bus.h"
#include "procinfo.h"
#include "svc.h"

static int
svc_write_conf(struct svc_run *r)
{
	char text[PATH_MAX + 512];
	int n;

	if (harness_path(r->svc.conf, sizeof(r->svc.conf), r->dir, "alarm-supervisor.conf") == -1 ||
	    harness_path(r->svc.log, sizeof(r->svc.log), r->dir, "service.log") == -1)
		return -1;
	n = snprintf(text, sizeof(text),
	    "# written by bench\n"
	    "[nats]\nservers = %s\nintake = %s\n"
	    "[service]\nworkers = %d\nstate_dir = %s\nlog_level = info\n"
	    "[http]\nlisten = \"\"\n",
	    r->nats.url, r->core ? "core" : "jetstream", r->workers, r->state);
	if (n < 0 || (size_t)n >= sizeof(text)) {
		harness_seterr("config text for %s does not fit", r->state);
		return -1;
	}
	return harness_write_file(r->svc.conf, text);
}

/* An update and a request for a probe user until its digest comes back: the service is ready. */
static int
svc_probe(struct svc_run *r)
{
	int64_t deadline = harness_now_ms() + 60000;
	struct collector *c = NULL;
	struct bus *b;
	char user[64];
	int rc = -1;

	snprintf(user, sizeof(user), "bench-probe-%s", r->tag);
	if ((b = bus_open(r->nats.url, false)) == NULL)
		return -1;
	if ((c = collector_new(b, "AlarmDigest")) == NULL)
		goto out;
	for (int attempt = 0; harness_now_ms() < deadline; attempt++) {
		char ts[48];

		model_ts_print(harness_wall_sec(), attempt, 0, 9, false, ts, sizeof(ts));
		if (bus_publish_update(b, user, "probe-alarm", attempt % 2 ? "CRITICAL" : "WARNING",
		    ts) == -1 || bus_publish_request(b, user) == -1 || bus_flush(b, 5000) == -1)
			goto out;
		r->probe_msgs += 2;
		if (collector_wait_user(c, user, 1, harness_now_ms() + 2000) == 0) {
			rc = 0;
			goto out;
		}
		if (!harness_proc_alive(&r->svc.proc)) {
			harness_seterr("the service exited during start-up; see %s", r->svc.log);
			goto out;
		}
	}
	harness_seterr("the service did not answer a probe digest request within 60 s; see %s",
	    r->svc.log);
out:
	collector_free(c);
	bus_close(b);
	return rc;
}

int
svc_start(struct svc_run *r, const char *bin, const char *tag, bool core, int workers,
    int stall_seconds, int (*prepare)(struct svc_run *r, void *arg), void *prepare_arg)
{
	memset(r, 0, sizeof(*r));
	r->tag = tag;
	r->core = core;
	r->workers = workers;
	r->stall_seconds = stall_seconds;
	snprintf(r->svc.bin, sizeof(r->svc.bin), "%s", bin);
	if (harness_tmpdir(tag, r->dir, sizeof(r->dir)) == -1)
		return -1;
	if ((r->model = model_new()) == NULL) {
		harness_seterr("out of memory for the model");
		return -1;
	}
	if (harness_path(r->state, sizeof(r->state), r->dir, "state") == -1)
		return -1;
	/* Seeding can take minutes: nats-server starts after it, not idle through it. */
	if (prepare != NULL && prepare(r, prepare_arg) == -1)
		return -1;
	if (harness_nats_start(&r->nats, r->dir) == -1 || svc_write_conf(r) == -1)
		return -1;
	if (harness_service_start(&r->svc) == -1)
		return -1;
	if (harness_workers_wait(r->svc.proc.pid, r->workers, 30000, 200, r->w) == -1)
		return -1;
	r->nw = r->workers;
	if (svc_probe(r) == -1)
		return -1;
	/*
	 * On a machine busy enough, a connect's handshake can time out (cnats
	 * says "Protocol Error"); a few tries tell that apart from a broker
	 * that is really gone.
	 */
	for (int i = 0; i < 3 && r->sink == NULL; i++)
		r->sink = dsink_open(r->nats.url, "AlarmDigest");
	if (r->sink == NULL)
		return -1;
	for (int i = 0; i < 3 && r->pub == NULL; i++)
		r->pub = pub_connect(r->nats.url, "bench-agents", false, &r->pub_ev);
	if (r->pub == NULL)
		return -1;
	return 0;
}

void
svc_scan_log(const char *path, const char *needle_a, const char *needle_b,
    struct logscan *ls)
{
	char line[2048];
	FILE *f;

	memset(ls, 0, sizeof(*ls));
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		bool a = strstr(line, needle_a) != NULL, b = needle_b && strstr(line, needle_b) != NULL;

		if (!a && !b)
			continue;
		/* The core-intake warning at start is documented, not odd. */
		if (strstr(line, "intake = core: NOT durable") != NULL)
			continue;
		if (a)
			ls->error++;
		else
			ls->warn++;
		if (ls->nfirst < 4) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(ls->first[ls->nfirst++], sizeof(ls->first[0]), "%.299s", line);
		}
	}
	fclose(f);
}

void
svc_stop(struct svc_run *r, bool keep, char *status, size_t cap)
{
	snprintf(status, cap, "not started");
	if (r->pub != NULL)
		pub_close(r->pub, &r->pub_ev);
	r->pub = NULL;
	dsink_close(r->sink);
	r->sink = NULL;
	if (r->svc.proc.pid > 0) {
		if (harness_service_stop(&r->svc, 30000) == -1)
			snprintf(status, cap, "did not stop within 30 s of SIGTERM (killed)");
		else
			harness_status_str(r->svc.proc.status, status, cap);
	}
	(void)harness_nats_stop(&r->nats);
	model_free(r->model);
	r->model = NULL;
	if (r->dir[0] != '\0') {
		if (keep) {
			harness_tmpdir_keep(r->dir);
			printf("# kept %s\n", r->dir);
		} else {
			(void)harness_tmpdir_remove(r->dir);
		}
	}
}

void
svc_counts(struct svc_run *r, struct svc_counts *c)
{
	char title[4096];

	memset(c, 0, sizeof(*c));
	c->master_in = -1;
	if (procinfo_title(r->svc.proc.pid, title, sizeof(title)))
		c->master_in = procinfo_title_u64(title, "in=");
	for (int i = 0; i < r->nw; i++) {
		if (!procinfo_title(r->w[i].pid, title, sizeof(title)))
			continue;
		int64_t m = procinfo_title_u64(title, "msgs="), a = procinfo_title_u64(title, "alarms=");
		c->worker_msgs += m > 0 ? m : 0;
		c->worker_alarms += a > 0 ? a : 0;
	}
}

size_t
svc_wait_digests(struct svc_run *r, size_t target)
{
	int64_t last_change = harness_now_ms();
	struct svc_counts prev = { -2, -2, -2 }, cur;
	size_t have = 0, prev_have = 0;

	for (;;) {
		have = dsink_wait(r->sink, target, harness_now_ms() + 500);
		if (have >= target)
			return have;
		svc_counts(r, &cur);
		if (have != prev_have || cur.master_in != prev.master_in ||
		    cur.worker_msgs != prev.worker_msgs)
			last_change = harness_now_ms();
		prev = cur;
		prev_have = have;
		if (harness_now_ms() - last_change > (int64_t)r->stall_seconds * 1000)
			return have;
		if (!harness_proc_alive(&r->svc.proc)) {
			r->died = true;
			return have;
		}
	}
}

struct svc_pace {
	struct svc_run *r;
	struct load *L;
	int phase;
	void (*sample)(struct svc_run *r, void *arg);
	void *sample_arg;
};

static int
svc_next(void *arg, size_t i, bool request, struct gen_msg *out)
{
	struct svc_pace *sp = arg;

	(void)i;
	return load_next(sp->L, sp->r->model, request, out);
}

static int
svc_sent(void *arg, const struct gen_msg *g, int64_t ns)
{
	struct svc_pace *sp = arg;

	if (g->request && g->expects)
		return load_mark_request(sp->L, g->user, sp->phase, ns);
	return 0;
}

static void
svc_tick(void *arg)
{
	struct svc_pace *sp = arg;

	if (sp->sample != NULL)
		sp->sample(sp->r, sp->sample_arg);
}

int
svc_paced(struct svc_run *r, struct load *L, double rate, double seconds, int req_every,
    int phase, void (*sample)(struct svc_run *, void *), void *sample_arg, struct paced *p)
{
	struct svc_pace sp = { r, L, phase, sample, sample_arg };
	struct pacer pc = { r->pub, rate, seconds, req_every, svc_next, svc_sent, svc_tick, &sp };

	return pace_run(&pc, p);
}
