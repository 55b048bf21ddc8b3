#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "../common/log.h"
#include "priv.h"

struct priv {
	bool set;             /* [service] user names the account */
	bool group_set;       /* [service] group names its group */
	bool drop;            /* started as root, to become someone else */
	uid_t uid;
	gid_t gid;
	char user[64];        /* account name (initgroups wants it) */
	char group[64];
	char desc[192];       /* "alarm-digest (uid 998, gid 998)" */
};

/* A uid's name for messages: "root", or "uid 1234" when it has none. */
static const char *
priv_uid_name(uid_t uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "uid %u", (unsigned)uid);
	return buf;
}

static const char *
priv_gid_name(gid_t gid, char *buf, size_t len)
{
	struct group *gr = getgrgid(gid);

	if (gr != NULL)
		snprintf(buf, len, "%s", gr->gr_name);
	else
		snprintf(buf, len, "%u", (unsigned)gid);
	return buf;
}

static int
priv_lookup_user(struct priv *p, const char *name)
{
	struct passwd *pw;

	errno = 0;
	if ((pw = getpwnam(name)) == NULL) {
		if (errno != 0 && errno != ENOENT && errno != ESRCH)
			log_error("looking up [service] user %s", name);
		else
			log_errorx("[service] user %s: no such user; create it (useradd --system "
			    "--no-create-home --shell /usr/sbin/nologin %s) or fix the config", name, name);
		return -1;
	}
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	snprintf(p->user, sizeof(p->user), "%s", pw->pw_name);
	return 0;
}

static int
priv_lookup_group(struct priv *p, const char *name)
{
	struct group *gr;

	errno = 0;
	if ((gr = getgrnam(name)) == NULL) {
		if (errno != 0 && errno != ENOENT && errno != ESRCH)
			log_error("looking up [service] group %s", name);
		else
			log_errorx("[service] group %s: no such group; create it (groupadd --system %s) "
			    "or fix the config", name, name);
		return -1;
	}
	p->gid = gr->gr_gid;
	return 0;
}

struct priv *
priv_new(const struct config *c)
{
	struct priv *p;

	if (c->user[0] == '\0' && c->group[0] != '\0') {
		log_errorx("[service] group is %s but [service] user is not set: set the user too "
		    "(the group alone is never switched to)", c->group);
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		log_error("allocating the account settings");
		return NULL;
	}
	p->set = c->user[0] != '\0';
	p->group_set = c->group[0] != '\0';
	if (p->set) {
		if (priv_lookup_user(p, c->user) == -1 ||
		    (p->group_set && priv_lookup_group(p, c->group) == -1)) {
			free(p);
			return NULL;
		}
	} else {
		p->uid = geteuid();
		p->gid = getegid();
		priv_uid_name(p->uid, p->user, sizeof(p->user));
	}
	priv_gid_name(p->gid, p->group, sizeof(p->group));
	snprintf(p->desc, sizeof(p->desc), "%s (uid %u, gid %u)", p->user, (unsigned)p->uid,
	    (unsigned)p->gid);
	p->drop = geteuid() == 0 && p->set && p->uid != 0;
	return p;
}

void
priv_free(struct priv *p)
{
	free(p);
}

const char *
priv_name(const struct priv *p)
{
	return p->desc;
}

int
priv_check(const struct priv *p)
{
	char me[64];

	if (geteuid() == 0) {
		if (!p->drop)
			log_warnx("running as root: every worker could do anything root can; set "
			    "[service] user to an unprivileged account (README, \"Security\")");
		return 0;
	}
	if (p->set && p->uid != geteuid()) {
		log_errorx("[service] user is %s but the service was started by %s (uid %u), not "
		    "root: only root can switch users; start it as root or as %s", p->desc,
		    priv_uid_name(geteuid(), me, sizeof(me)), (unsigned)geteuid(), p->user);
		return -1;
	}
	if (p->group_set && p->gid != getegid()) {
		log_errorx("[service] group is %s (gid %u) but the service was started with gid %u, "
		    "not as root: only root can switch groups; start it as root or with that group",
		    p->group, (unsigned)p->gid, (unsigned)getegid());
		return -1;
	}
	return 0;
}

/* Created just now: ours to give away, through a descriptor so a swapped-in link cannot redirect it. */
static int
priv_state_dir_give(const struct priv *p, const char *dir)
{
	int fd;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		log_error("open state_dir %s after creating it", dir);
		return -1;
	}
	if (fchown(fd, p->uid, p->gid) == -1) {
		log_error("chown state_dir %s to %s", dir, p->desc);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int
priv_state_dir(const struct priv *p, const char *dir)
{
	char owner[64];
	struct stat st;

	if (mkdir(dir, 0700) == 0) {
		if (p->drop && priv_state_dir_give(p, dir) == -1)
			return -1;
	} else if (errno != EEXIST) {
		log_error("mkdir state_dir %s", dir);
		return -1;
	}
	if (stat(dir, &st) == -1) {
		log_error("stat state_dir %s", dir);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_errorx("state_dir %s is not a directory; refusing to start", dir);
		return -1;
	}
	if (st.st_uid != p->uid) {
		log_errorx("state_dir %s is owned by %s (uid %u), not by %s, the account the service "
		    "runs as: another account could change the state under it; refusing to start. "
		    "If the directory and its contents are the service's, give them to it: "
		    "chown -R %s:%s %s", dir, priv_uid_name(st.st_uid, owner, sizeof(owner)),
		    (unsigned)st.st_uid, p->desc, p->user, p->group, dir);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		log_errorx("state_dir %s has mode %04o: its group or others may write it, and could "
		    "plant files or links the service would follow; refusing to start. "
		    "Fix: chmod go-w %s", dir, (unsigned)(st.st_mode & 07777), dir);
		return -1;
	}
	return 0;
}

int
priv_give(const struct priv *p, int fd, const char *path)
{
	if (p->drop && fchown(fd, p->uid, p->gid) == -1) {
		log_error("chown %s to %s", path, p->desc);
		return -1;
	}
	return 0;
}

int
priv_drop(const struct priv *p)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (!p->drop)
		return 0;
	if (initgroups(p->user, p->gid) == -1) {
		log_error("initgroups for %s", p->desc);
		return -1;
	}
	if (setresgid(p->gid, p->gid, p->gid) == -1) {
		log_error("setresgid to %s", p->desc);
		return -1;
	}
	if (setresuid(p->uid, p->uid, p->uid) == -1) {
		log_error("setresuid to %s", p->desc);
		return -1;
	}
	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1) {
		log_error("reading back the ids after dropping to %s", p->desc);
		return -1;
	}
	if (ru != p->uid || eu != p->uid || su != p->uid ||
	    rg != p->gid || eg != p->gid || sg != p->gid) {
		log_errorx("after dropping to %s the ids are uid %u/%u/%u gid %u/%u/%u; refusing to run",
		    p->desc, (unsigned)ru, (unsigned)eu, (unsigned)su, (unsigned)rg, (unsigned)eg,
		    (unsigned)sg);
		return -1;
	}
	/* The proof that matters: no way back. */
	if (setuid(0) == 0 || seteuid(0) == 0) {
		log_errorx("dropped to %s but could become root again; refusing to run", p->desc);
		return -1;
	}
	log_info("running as %s", p->desc);
	return 0;
}
