"""User directories: where logins are checked and recipients looked up (issue 11)."""
