"""Errors shared by the services."""


class BorderwatchError(Exception):
    """Base of every error borderwatch raises on purpose."""


class ConfigError(BorderwatchError):
    """A configuration value or operator file is invalid; the message says where and why."""
