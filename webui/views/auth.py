"""Sign-in, rate limited: 429 with Retry-After past RATE_LIMIT_LOGIN per user name or RATE_LIMIT_LOGIN_IP per address."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.shortcuts import render

from experiments_app import ratelimit

login_view = auth_views.LoginView.as_view()


def client_address(request):
    return request.META.get("REMOTE_ADDR", "")


def login(request):
    if request.method == "POST":
        username = str(request.POST.get("username", ""))[:150].lower()
        wait = ratelimit.hit("login-ip", client_address(request), settings.RATE_LIMIT_LOGIN_IP) or ratelimit.hit(
            "login-user", username, settings.RATE_LIMIT_LOGIN
        )
        if wait:
            response = render(request, "registration/too_many.html", {"wait": wait}, status=429)
            response["Retry-After"] = str(wait)
            return response
    return login_view(request)
