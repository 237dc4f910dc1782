/* The protocol every self-checking test program speaks (see docs/TEST-PROGRAMS.md):
 * `prog RESULT_FILE [args...]`; READY <pid> once set up; on SIGUSR1 check and write PASS or
 * FAIL <what>; CRR_SELFTEST_BREAK=<kind> damages one piece of state first so tests can prove
 * that a check is able to fail. Header-only so each program stays one self-contained file. */
#ifndef CRR_TEST_PROGRAMS_COMMON_H
#define CRR_TEST_PROGRAMS_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define UNUSED __attribute__((unused))

static const char *result_path;
static const char *break_kind; /* NULL unless CRR_SELFTEST_BREAK is set */
static volatile sig_atomic_t check_requested;
static char first_failure[512];

/* Written to a temporary name and renamed so a reader never sees a half-written line, and
 * the program never holds the result file open (it would otherwise be part of every dump). */
static UNUSED void write_file_atomically(const char *path, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		_exit(3);
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len)
		_exit(3);
	close(fd);
	if (rename(tmp, path) != 0)
		_exit(3);
}

static UNUSED void write_result(const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	write_file_atomically(result_path, text);
}

static void on_check_signal(int sig)
{
	(void)sig;
	check_requested = 1;
}

/* `handler` for `sig`, nothing blocked while it runs; flags: SA_RESTART or 0. */
static UNUSED void catch_signal(int sig, void (*handler)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

/* restart_flag is SA_RESTART or 0: programs that sit in a restartable syscall say which. */
static UNUSED void protocol_start(int argc, char **argv, const char *const break_kinds[],
				  int restart_flag)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s RESULT_FILE [args...]\n", argv[0]);
		exit(2);
	}
	result_path = argv[1];
	break_kind = getenv("CRR_SELFTEST_BREAK");
	if (break_kind && *break_kind) {
		int known = 0;
		for (int i = 0; break_kinds[i]; i++)
			known |= strcmp(break_kinds[i], break_kind) == 0;
		if (!known) {
			write_result("ERROR unknown CRR_SELFTEST_BREAK kind '%s'\n", break_kind);
			exit(2);
		}
	} else {
		break_kind = NULL;
	}
	catch_signal(SIGUSR1, on_check_signal, restart_flag);
}

static UNUSED int breaking(const char *kind)
{
	return break_kind && strcmp(break_kind, kind) == 0;
}

static UNUSED void fail(const char *fmt, ...)
{
	if (first_failure[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(first_failure, sizeof(first_failure), fmt, ap);
	va_end(ap);
}

static UNUSED void protocol_ready(void)
{
	write_result("READY %d\n", (int)getpid());
}

/* A sleep loop rather than pause(): no race between testing the flag and sleeping, and no
 * temporary signal mask (sigsuspend) that a dump could catch instead of the real one. */
static UNUSED void wait_for_check(void)
{
	while (!check_requested) {
		struct timespec one_second = { 1, 0 };
		nanosleep(&one_second, NULL);
	}
}

/* Writes PASS or the first failure; returns the exit code. */
static UNUSED int protocol_report(void)
{
	if (first_failure[0]) {
		write_result("FAIL %s\n", first_failure);
		return 1;
	}
	write_result("PASS\n");
	return 0;
}

/* splitmix64 of (seed, index): any word of a pattern can be computed on its own, so checks need
 * no copy of what was written. */
static UNUSED uint64_t pattern_word(uint64_t seed, uint64_t index)
{
	uint64_t z = seed + index * 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static UNUSED void fill(unsigned char *start, unsigned long size, uint64_t seed)
{
	uint64_t *words = (uint64_t *)start;
	for (unsigned long i = 0; i < size / 8; i++)
		words[i] = pattern_word(seed, i);
}

/* The byte offset of the first word of [from, from + size) that is not the pattern's, or -1. */
static UNUSED long first_mismatch(const unsigned char *start, unsigned long from, unsigned long size, uint64_t seed)
{
	const uint64_t *words = (const uint64_t *)start;
	for (unsigned long i = from / 8; i < (from + size) / 8; i++)
		if (words[i] != pattern_word(seed, i))
			return (long)(i * 8);
	return -1;
}

/* The directory the result file lives in: programs keep their temp files there. */
static UNUSED void result_dir(char *out, size_t size)
{
	snprintf(out, size, "%s", result_path);
	char *slash = strrchr(out, '/');
	if (slash == out)
		out[1] = 0;
	else if (slash)
		*slash = 0;
	else
		snprintf(out, size, ".");
}

/* The whole of a /proc file into buf (NUL-terminated; cut at size - 1 bytes): raw open/read,
 * since stdio would malloc, which moves the heap some programs check. */
static UNUSED char *read_proc_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t total = 0, n;
	while (fd >= 0 && (n = read(fd, buf + total, size - 1 - total)) > 0)
		total += n;
	if (fd >= 0)
		close(fd);
	buf[total] = 0;
	return buf;
}

/* xorshift64: a cheap, reproducible pattern generator for memory contents. */
static UNUSED uint64_t next_pattern(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

#endif
