"""The use cases: one function for each thing an organiser, a recipient or a task does. The web pages, the
API, the CLI and the workers all call these."""
