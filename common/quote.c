#include <string.h>

#include "quote.h"

const char *
quote_bytes(char *dst, size_t dstlen, const void *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = src;
	size_t o = 0, cut = 0;   /* cut: the longest whole prefix that leaves room for "..." */

	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		size_t need = (c >= 0x20 && c < 0x7f) ? (c == '"' || c == '\\' ? 2 : 1) : 4;

		if (o + need + 1 > dstlen) {
			memcpy(dst + cut, "...", 3);
			o = cut + 3;
			break;
		}
		if (need == 1) {
			dst[o++] = (char)c;
		} else if (need == 2) {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		}
		if (o + 4 <= dstlen)
			cut = o;
	}
	dst[o] = '\0';
	return dst;
}
