"""The admin API and web console (``[admin]``): an HTTP layer over what the CLI does."""
