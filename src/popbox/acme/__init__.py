"""Certificates by ACME (RFC 8555): obtained at start, renewed before expiry, installed live.

Modules: ``files`` (what lives in ``data_dir/acme``), ``client`` (one issuance, with
certbot's synchronous ``acme`` library, run in a thread), ``challenges`` (the HTTP-01
listener), ``manager`` (when to renew, metrics, logs, installing).
"""
