#include <stdarg.h>
#include <stdio.h>

#include <bsd/unistd.h>

#include "title.h"

extern char **environ;

void
title_init(int argc, char *argv[])
{
	setproctitle_init(argc, argv, environ);
}

void
title_set(const char *fmt, ...)
{
	char t[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t, sizeof(t), fmt, ap);
	va_end(ap);
	/* The leading '-' stops libbsd from prefixing the program name a second time. */
	setproctitle("-alarm-supervisor: %s", t);
}
