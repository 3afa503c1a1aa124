"""Scan records: the durable, encrypted store of every saved scan."""
