"""Routes the example as its docstring tells a project to: under experiments/."""

from django.urls import include, path

urlpatterns = [path("experiments/", include("django_webhook"))]
