"""What is read and shown, never written: an event's status, the dashboard, exports, metrics and health."""
