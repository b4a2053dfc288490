from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webui.views import auth

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth.login, name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]), name="api-docs"),
    path("api/v1/", include("experiments_app.urls", namespace="api")),
    path("", include("webui.urls", namespace="webui")),
]

handler500 = "webui.views.errors.server_error"
