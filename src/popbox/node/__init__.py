"""What runs a node: serving until a signal, the supervisor, its workers and their channel."""
