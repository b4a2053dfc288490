"""The message storage is made only for a request that uses it (dashboard.middleware)."""

from django.contrib import messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty

from dashboard.middleware import LazyMessageMiddleware


def through(view):
    """A request through the session and message middleware to `view`; (request, response)."""
    seen = {}

    def handler(request):
        seen["request"] = request
        return view(request)

    middleware = SessionMiddleware(LazyMessageMiddleware(handler))
    response = middleware(RequestFactory().get("/"))
    return seen["request"], response


def test_a_request_that_never_uses_messages_never_makes_their_storage():
    request, response = through(lambda request: HttpResponse("ok"))
    assert request._messages._wrapped is empty
    assert "messages" not in response.cookies


def test_a_message_added_is_stored_for_the_next_request_and_read_there():
    def add(request):
        messages.success(request, "Saved.")
        return HttpResponse("ok")

    request, response = through(add)
    assert isinstance(request._messages._wrapped, FallbackStorage)
    cookie = response.cookies["messages"].value
    assert cookie

    reader = RequestFactory().get("/")
    reader.COOKIES["messages"] = cookie
    read = {}

    def show(request):
        read["texts"] = [str(message) for message in messages.get_messages(request)]
        return HttpResponse("ok")

    SessionMiddleware(LazyMessageMiddleware(show))(reader)
    assert read["texts"] == ["Saved."]
