"""Domain errors. The API and pages map each to one HTTP status in one place."""


class DomainError(Exception):
    """Base of every error a domain action raises on purpose."""

    code = "error"

    def __init__(self, detail, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class ValidationFailed(DomainError):
    """Bad input (400). `errors` maps each field path to its messages."""

    code = "invalid"

    def __init__(self, errors, detail="Invalid input."):
        super().__init__(detail)
        self.errors = {key: ([value] if isinstance(value, str) else list(value)) for key, value in errors.items()}

    def __str__(self):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in self.errors.items())


class Conflict(DomainError):
    """A state that forbids the change (409)."""

    code = "conflict"


class Locked(Conflict):
    """The experiment's scope or baseline is locked since the baseline ran (409)."""

    code = "locked"


class NotFound(DomainError):
    """The object does not exist for this team (404)."""

    code = "not_found"
