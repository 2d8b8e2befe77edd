"""The sans-IO POP3 core: bytes in, events and reply bytes out; only the standard library."""
