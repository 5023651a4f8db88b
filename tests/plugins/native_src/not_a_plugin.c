/* Not a Dativo plugin: a shared library without dativo_abi_version. */
int not_a_plugin(void) { return 42; }
