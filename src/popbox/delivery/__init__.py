"""Mail in: LMTP (RFC 2033), ``popbox deliver`` (MDA), quotas and retention."""
