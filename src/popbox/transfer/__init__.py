"""Import from mbox, Maildir and .eml folders, and export, keeping unique-ids."""
