"""The socket layer POP3 and LMTP share: binding, the accept loop, PROXY headers."""
