"""One-off experiment scripts behind the reports; not installed (see README.md)."""
