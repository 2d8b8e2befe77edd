"""The POP3 server: accepting, sessions, logins, TLS and reloads, over ``protocol/``."""
