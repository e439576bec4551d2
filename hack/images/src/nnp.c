/*
 * NoNewPrivs probe for the offline test images: installed setuid root, it
 * reports the effective uid it ended up with.  critest expects
 * "Effective uid: 0" when privilege escalation is allowed and the caller's
 * uid when no_new_privs blocked the setuid bit.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
