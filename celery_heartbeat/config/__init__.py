"""Internal: what the user configured, parsed once and checked: settings, monitors, wire formats, the task registry."""
