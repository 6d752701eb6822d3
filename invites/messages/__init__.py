"""Composing messages, purely: the templates, Dutch dates, the calendar (iCalendar) and the MIME bytes with
their DKIM signature. Reads events and people through the attributes it needs; no database session."""
