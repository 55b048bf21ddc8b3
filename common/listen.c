#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "listen.h"

static int
listen_port(const char *s, in_port_t *port, const char **why)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9') {
		*why = "has no port after ':' (write host:port, [v6addr]:port)";
		return -1;
	}
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || errno != 0 || v == 0 || v > 65535) {
		*why = "has a port that is not 1..65535";
		return -1;
	}
	*port = htons((in_port_t)v);
	return 0;
}

int
listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, const char **why)
{
	char host[64];
	const char *colon;
	size_t hlen;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		const char *close = strchr(s, ']');
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		if (close == NULL || close[1] != ':') {
			*why = "has an IPv6 address without \"]:port\" after it";
			return -1;
		}
		hlen = (size_t)(close - s - 1);
		if (hlen == 0 || hlen >= sizeof(host)) {
			*why = "has no valid IPv6 address in brackets";
			return -1;
		}
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			*why = "has no valid IPv6 address in brackets";
			return -1;
		}
		s6->sin6_family = AF_INET6;
		*sslen = sizeof(*s6);
		return listen_port(close + 2, &s6->sin6_port, why);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	if ((colon = strrchr(s, ':')) == NULL) {
		*why = "has no port (write host:port, [v6addr]:port)";
		return -1;
	}
	hlen = (size_t)(colon - s);
	if (hlen == 0 || hlen >= sizeof(host) || memchr(s, ':', hlen) != NULL) {
		*why = "has no numeric IPv4 address before the port (IPv6 goes in brackets)";
		return -1;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
		*why = "has no numeric IPv4 address before the port (IPv6 goes in brackets)";
		return -1;
	}
	s4->sin_family = AF_INET;
	*sslen = sizeof(*s4);
	return listen_port(colon + 1, &s4->sin_port, why);
}
