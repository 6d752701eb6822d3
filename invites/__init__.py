"""invites: queue-driven email and calendar invitations with RSVP."""

__version__ = "0.1.0"
