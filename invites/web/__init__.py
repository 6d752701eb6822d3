"""The web app: RSVP pages for recipients, status and outbox pages for organisers."""
