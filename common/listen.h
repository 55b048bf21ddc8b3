/*
 * listen: the address a local server binds, written "host:port".
 *
 * host is a numeric IPv4 address or a bracketed IPv6 one ("[::1]:9465"),
 * never a name: a config that binds must not depend on DNS at start, and
 * "-t" must judge it the same way the start does.  port is 1..65535.
 */
#ifndef LISTEN_H
#define LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * Parse s into *ss (length in *sslen).  0, or -1 with a static reason in
 * *why ("has no port", ...), fit for "<key> \"<value>\" <why>".
 */
int listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, const char **why);

#endif
