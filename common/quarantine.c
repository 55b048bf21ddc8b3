#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "quarantine.h"
#include "quote.h"

void
quarantine_report(const char *dir, const char *user, size_t user_len, const char *why)
{
	char name[128];

	quote_bytes(name, sizeof(name), user, user_len);
	log_errorx("%s: corrupt record for user \"%s\": %s", dir, name, why);
}

void
quarantine_save(const char *dir, const void *data, size_t len)
{
	char path[PATH_MAX];
	struct timespec ts;
	int fd;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(path, sizeof(path), "%s/quarantine", dir);
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		log_error("mkdir %s", path);
		return;
	}
	snprintf(path, sizeof(path), "%s/quarantine/%lld.%09ld.rec", dir, (long long)ts.tv_sec, ts.tv_nsec);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1) {
		log_error("open %s", path);
		return;
	}
	if (write(fd, data, len) != (ssize_t)len)
		log_error("write %s", path);
	close(fd);
	log_errorx("%s: corrupt record saved to %s (%zu bytes); what it held is dropped", dir, path, len);
}
