"""The foundation every workload imports: settings, logs, errors, files, storage URLs, progress.

No ML framework is imported here."""
