/*
 * pthread_setname_np for the router builds, linked before libc.a so that
 * musl's own is not pulled in (board/build.sh, "libc shim").
 *
 * Why: std names a thread by calling pthread_setname_np(pthread_self(), ..)
 * in the new thread (async-io's "async-io" thread, the agent's "resolve"
 * thread). musl's version handles other threads too, by writing
 * /proc/self/task/TID/comm with a path made by snprintf, and snprintf is
 * the only user of musl's printf machinery in the agent: 13-14 KB of the
 * MIPS binary for a path nobody builds. This keeps musl's behaviour for
 * the calling thread (prctl PR_SET_NAME, ERANGE past 15 bytes) and
 * answers ENOTSUP for any other thread, which std never asks for.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>

int pthread_setname_np(pthread_t thread, const char *name)
{
	if (strnlen(name, 16) > 15)
		return ERANGE;
	if (!pthread_equal(thread, pthread_self()))
		return ENOTSUP;
	return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL) ? errno : 0;
}
