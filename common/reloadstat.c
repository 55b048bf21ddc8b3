#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "layout.h"
#include "log.h"
#include "reloadstat.h"

/* Far above any real status: a diff of every key with long paths is a few KiB. */
#define RELOADSTAT_MAX_BYTES (256 * 1024)

struct reloadstat {
	json_object *obj;   /* {"generation", "pid", "time", "ok", "message", "changes": [...]} */
};

static const char *
rs_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

struct reloadstat *
reloadstat_new(void)
{
	struct reloadstat *rs;

	if ((rs = calloc(1, sizeof(*rs))) == NULL || (rs->obj = json_object_new_object()) == NULL ||
	    json_object_object_add(rs->obj, "ok", json_object_new_boolean(1)) != 0 ||
	    json_object_object_add(rs->obj, "message", json_object_new_string("")) != 0 ||
	    json_object_object_add(rs->obj, "changes", json_object_new_array()) != 0) {
		log_error("allocating the reload status");
		reloadstat_free(rs);
		return NULL;
	}
	return rs;
}

void
reloadstat_free(struct reloadstat *rs)
{
	if (rs == NULL)
		return;
	json_object_put(rs->obj);
	free(rs);
}

void
reloadstat_change(struct reloadstat *rs, const char *key, const char *old_value,
    const char *new_value, bool restart_needed)
{
	json_object *c, *arr;

	if (rs == NULL || !json_object_object_get_ex(rs->obj, "changes", &arr))
		return;
	if ((c = json_object_new_object()) == NULL ||
	    json_object_object_add(c, "key", json_object_new_string(key)) != 0 ||
	    json_object_object_add(c, "old", json_object_new_string(old_value)) != 0 ||
	    json_object_object_add(c, "new", json_object_new_string(new_value)) != 0 ||
	    json_object_object_add(c, "restart", json_object_new_boolean(restart_needed)) != 0 ||
	    json_object_array_add(arr, c) != 0) {
		/* The reload goes on; its status then lists fewer changes than the log. */
		log_warnx("reload status: no memory to record the change of %s", key);
		json_object_put(c);
	}
}

void
reloadstat_fail(struct reloadstat *rs, const char *why)
{
	if (rs == NULL)
		return;
	json_object_object_add(rs->obj, "ok", json_object_new_boolean(0));
	json_object_object_add(rs->obj, "message", json_object_new_string(why));
	json_object_object_add(rs->obj, "changes", json_object_new_array());
}

int
reloadstat_write(struct reloadstat *rs, const char *state_dir)
{
	struct reloadstat *prev = NULL;
	char path[PATH_MAX], err[512], when[32], *line;
	uint64_t gen = 1;
	int rc;
	time_t now = time(NULL);
	struct tm tm;
	const char *text;

	if (rs == NULL)
		return -1;
	/* A file we cannot read starts over at 1: a waiter then times out and says so. */
	if (reloadstat_read(state_dir, &prev, err, sizeof(err)) == 1)
		gen = reloadstat_generation(prev) + 1;
	else if (*err != '\0')
		log_warnx("reload status: %s; starting at generation 1", err);
	reloadstat_free(prev);
	if (gmtime_r(&now, &tm) == NULL || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(when, sizeof(when), "?");
	json_object_object_add(rs->obj, "generation", json_object_new_int64((int64_t)gen));
	json_object_object_add(rs->obj, "pid", json_object_new_int64((int64_t)getpid()));
	json_object_object_add(rs->obj, "time", json_object_new_string(when));
	if ((text = json_object_to_json_string_ext(rs->obj, JSON_C_TO_STRING_PLAIN)) == NULL) {
		log_errorx("reload status: cannot format it");
		return -1;
	}
	if (layout_path(path, sizeof(path), state_dir, RELOADSTAT_FILE) == -1)
		return -1;
	if (asprintf(&line, "%s\n", text) == -1) {
		log_error("reload status for %s: formatting", path);
		return -1;
	}
	rc = layout_write_file(path, line);
	free(line);
	return rc;
}

/* The whole file; NULL with err set, or with *missing when it does not exist. */
static char *
rs_slurp(const char *path, bool *missing, char *err, size_t errlen)
{
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd;

	*missing = false;
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			*missing = true;
		else
			snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(RELOADSTAT_MAX_BYTES + 1)) == NULL) {
		snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	while (len < RELOADSTAT_MAX_BYTES && (n = read(fd, buf + len, RELOADSTAT_MAX_BYTES - len)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
			close(fd);
			free(buf);
			return NULL;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
}

int
reloadstat_read(const char *state_dir, struct reloadstat **out, char *err, size_t errlen)
{
	struct reloadstat *rs;
	json_object *o, *v;
	char path[PATH_MAX], *text;
	bool missing;

	*out = NULL;
	*err = '\0';
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", state_dir, RELOADSTAT_FILE) >= sizeof(path)) {
		snprintf(err, errlen, "path %s/%s is too long", state_dir, RELOADSTAT_FILE);
		return -1;
	}
	if ((text = rs_slurp(path, &missing, err, errlen)) == NULL)
		return missing ? 0 : -1;
	o = json_tokener_parse(text);
	free(text);
	if (o == NULL || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "generation", &v) || !json_object_is_type(v, json_type_int) ||
	    !json_object_object_get_ex(o, "changes", &v) || !json_object_is_type(v, json_type_array)) {
		snprintf(err, errlen, "%s is not a reload status (JSON with generation and changes)", path);
		json_object_put(o);
		return -1;
	}
	if ((rs = calloc(1, sizeof(*rs))) == NULL) {
		snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
		json_object_put(o);
		return -1;
	}
	rs->obj = o;
	*out = rs;
	return 1;
}

uint64_t
reloadstat_generation(const struct reloadstat *rs)
{
	json_object *v;

	if (!json_object_object_get_ex(rs->obj, "generation", &v))
		return 0;
	return (uint64_t)json_object_get_int64(v);
}

long
reloadstat_pid(const struct reloadstat *rs)
{
	json_object *v;

	if (!json_object_object_get_ex(rs->obj, "pid", &v))
		return 0;
	return (long)json_object_get_int64(v);
}

bool
reloadstat_ok(const struct reloadstat *rs)
{
	json_object *v;

	return json_object_object_get_ex(rs->obj, "ok", &v) && json_object_get_boolean(v);
}

const char *
reloadstat_message(const struct reloadstat *rs)
{
	return rs_str(rs->obj, "message");
}

size_t
reloadstat_changes(const struct reloadstat *rs)
{
	json_object *arr;

	if (!json_object_object_get_ex(rs->obj, "changes", &arr))
		return 0;
	return json_object_array_length(arr);
}

void
reloadstat_change_at(const struct reloadstat *rs, size_t i, const char **key,
    const char **old_value, const char **new_value, bool *restart_needed)
{
	json_object *arr, *c, *v;

	json_object_object_get_ex(rs->obj, "changes", &arr);
	c = json_object_array_get_idx(arr, i);
	*key = rs_str(c, "key");
	*old_value = rs_str(c, "old");
	*new_value = rs_str(c, "new");
	*restart_needed = json_object_object_get_ex(c, "restart", &v) && json_object_get_boolean(v);
}
