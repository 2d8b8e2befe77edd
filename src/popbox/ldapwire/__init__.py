"""LDAPv3 on the wire (RFC 4511, RFC 4515), sans-IO: popbox's own LDAP client's codec."""
