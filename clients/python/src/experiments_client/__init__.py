"""Client and command line for the experiments dashboard API."""

from experiments_client.client import ApiError, Client, ClientError, ConnectionFailed, RunTimedOut

__all__ = ["ApiError", "Client", "ClientError", "ConnectionFailed", "RunTimedOut"]
__version__ = "0.1.0"
