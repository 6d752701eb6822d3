"""The command line (`invites ...`), the demo, and their terminal output."""
