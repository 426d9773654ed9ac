"""Machine and process plumbing: hardware, several processes, signals, logs, secrets, files."""
