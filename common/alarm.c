#include "alarm.h"

const char *
alarm_status_name(enum alarm_status s)
{
	switch (s) {
	case STATUS_CLEARED:
		return "CLEARED";
	case STATUS_WARNING:
		return "WARNING";
	case STATUS_CRITICAL:
		return "CRITICAL";
	}
	return "UNKNOWN";
}
