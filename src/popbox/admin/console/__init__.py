"""The web console: server-rendered pages over the admin actions, small vanilla JS."""
