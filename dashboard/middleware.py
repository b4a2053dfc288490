"""Middleware of our own."""

from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.utils.functional import SimpleLazyObject, empty


class LazyMessageMiddleware(MessageMiddleware):
    """Django's MessageMiddleware with the message storage made on first use. Most requests
    (the API's, every result post) never read or add a message, and building the storage (a
    cookie and a session storage behind a fallback) was ~3% of a result post's CPU. A storage
    never made holds nothing to save, so the response is left alone (as `update` would)."""

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response
        return super().process_response(request, response)
