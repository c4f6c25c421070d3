"""One error tree for the project; every error a user can cause ends in ``Error`` under ``HejctiError``."""


class HejctiError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(HejctiError):
    """The configuration cannot work (missing SECRET_KEY with DATABASE_URL, bad CIDR, …)."""


class NotFoundError(HejctiError):
    """An account, user or token that does not exist."""


class BadRequestError(HejctiError):
    """Input that cannot be parsed; the message says why in one line."""


class DatabaseUnavailableError(HejctiError):
    """PostgreSQL does not answer; the caller answers 503 and keeps nothing half-stored."""
