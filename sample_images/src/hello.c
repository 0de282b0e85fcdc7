/* The sample program of hello-glibc and hello-musl.
 *
 * hello-glibc:  gcc -O2 -o hello hello.c -DWITH_ZLIB -lz      (NEEDED libz.so.1, libc.so.6)
 * hello-musl:   musl-gcc -O2 -o hello hello.c                  (NEEDED libc.so, musl's own ld)
 * The recipes in ../recipes/ run exactly these lines; see ../README.md.
 */
#include <stdio.h>
#include <string.h>
#ifdef WITH_ZLIB
#include <zlib.h>
#endif

int main(int argc, char **argv)
{
    const char *msg = argc > 1 ? argv[1] : "hello from slim";
#ifdef WITH_ZLIB
    unsigned long crc = crc32(0L, (const unsigned char *)msg, (unsigned int)strlen(msg));
    printf("%s (zlib %s, crc32 %08lx)\n", msg, zlibVersion(), crc);
#else
    printf("%s (%zu bytes)\n", msg, strlen(msg));
#endif
    return 0;
}
