/* A distinctive program for the exec tests: does nothing and exits 0, so every exec the tests
 * count is one the test itself made. */
int main(void) { return 0; }
