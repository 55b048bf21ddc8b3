/*
 * scratch: a scratch directory for unit tests that touch files.  Each
 * test case gets a fresh one under /tmp (cmocka setup) that is removed
 * with everything in it afterwards (teardown).  Define SCRATCH_NAME, the
 * test's name, before including; the directory's path is in `dir`.
 */
#ifndef SCRATCH_H
#define SCRATCH_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

static char dir[64];         /* "/tmp/NAME.XXXXXX" */

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/%s.XXXXXX", SCRATCH_NAME);
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#endif
