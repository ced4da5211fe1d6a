"""Launcher configs: `get_config(arg)` per launcher (see common.parse_arg)."""
