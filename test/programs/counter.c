/* The quick-start demo: appends an increasing counter, one line a second, to OUTPUT_FILE (and
 * to stdout when that is a terminal). Dumped and restored, it carries on from the number it
 * had reached. On SIGUSR1 it checks that the file holds exactly 1..N in order, N being the
 * number in memory: a restore that lost memory or the file's offset shows as a gap or a repeat.
 * Usage: counter RESULT_FILE [OUTPUT_FILE (default RESULT_FILE.out)] */
#include "common.h"
#include <sys/stat.h>

static char output_path[4096];
static long count;

static void check_output(void)
{
	int fd = open(output_path, O_RDONLY);
	if (fd < 0) {
		fail("cannot open %s: %s", output_path, strerror(errno));
		return;
	}
	char buf[65536];
	long expected = 1, line_value = 0;
	int in_line = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] >= '0' && buf[i] <= '9') {
				line_value = line_value * 10 + (buf[i] - '0');
				in_line = 1;
			} else if (buf[i] == '\n' && in_line) {
				if (line_value != expected) {
					fail("line %ld of the output says %ld", expected, line_value);
					close(fd);
					return;
				}
				expected++;
				line_value = 0;
				in_line = 0;
			}
		}
	}
	close(fd);
	if (expected - 1 != count)
		fail("the output ends at %ld, the counter in memory is %ld", expected - 1, count);
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "memory", NULL };
	protocol_start(argc, argv, kinds, 0);
	snprintf(output_path, sizeof(output_path), "%s", argc > 2 ? argv[2] : "");
	if (!output_path[0])
		snprintf(output_path, sizeof(output_path), "%s.out", result_path);
	int out = open(output_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (out < 0) {
		write_result("ERROR cannot open %s: %s\n", output_path, strerror(errno));
		return 2;
	}
	int to_terminal = isatty(1);
	protocol_ready();
	while (!check_requested) {
		char line[32];
		int len = snprintf(line, sizeof(line), "%ld\n", ++count);
		if (write(out, line, len) != len)
			fail("write to %s failed: %s", output_path, strerror(errno));
		if (to_terminal && write(1, line, len) < 0)
			to_terminal = 0;
		sleep(1); /* a signal cuts it short; the loop then sees check_requested */
	}
	if (breaking("memory"))
		count += 5;
	check_output();
	return protocol_report();
}
