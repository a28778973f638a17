"""The supervised children: task link, result link, engine, and task execution."""
