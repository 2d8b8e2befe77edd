"""SASL mechanisms (one module each), password hashing and the registry that offers them."""
